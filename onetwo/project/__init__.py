"""The project file: typed config, its strict parser, which file a command means, and `onetwo init`."""
