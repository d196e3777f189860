"""Built-in backends, one module each; `durastate.registry` maps URL schemes to them lazily."""
