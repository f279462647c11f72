"""The configuration: strict TOML/flag parsing, one resolving pass, validation and the source budget."""
