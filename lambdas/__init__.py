"""Lambda runtime glue: one thin handler per function, shared parsing and configuration in common/."""
