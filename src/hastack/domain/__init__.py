"""hastack's domain: plain, immutable types shared by the policy core, the engine and drivers."""
