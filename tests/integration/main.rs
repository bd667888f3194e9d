mod config_cli;
