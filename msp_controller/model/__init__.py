"""What the operator declares, validated once: MSP settings, homenets, policies."""
