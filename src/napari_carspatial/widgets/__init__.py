"""Qt widgets: the only place that imports qtpy or magicgui."""
