"""Examples for the demo and the README: tools acting on a small local "shop", a config with
three task types (one per autonomy level) and a script for the offline model."""
