"""msp: multihoming as a service."""
