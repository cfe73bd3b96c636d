"""What the gateway keeps about its upstreams: the one HTTP client (:mod:`.transport`)
and their health, breakers and latency shared between replicas (:mod:`.health`)."""
