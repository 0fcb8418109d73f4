"""Who a switch is: the CA and box certificates (pki), and the check that a box is who it claims (binding)."""
