"""The Textual workbench: ``wb`` with no arguments (see ``app.run_app``)."""
