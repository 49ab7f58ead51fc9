"""The ``wb`` command line (typer). Heavy modules are imported inside the commands."""
