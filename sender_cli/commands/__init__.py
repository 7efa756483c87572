"""One module per noun of the `sender` command."""
