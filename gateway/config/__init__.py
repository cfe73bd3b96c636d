"""Configuration: YAML -> validated, frozen values (:mod:`.load`, :mod:`.schema`) and hot reload (:mod:`.reload`)."""
