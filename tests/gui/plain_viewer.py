"""A plain ``napari.Viewer(show=True)`` for tests that cannot use napari's ``make_napari_viewer``
(its leak check flags docks opened from the plugin manifest), made safe to mix with it.

napari's fixture gives each test a throw-away app model and clears ``_initialize_plugins``'s
cache; a plain viewer made afterwards registers the plugins' commands again into napari's real
app model, which already has them from an earlier plain viewer ("Command
'napari-carspatial.get_reader' already registered"): the order tests run in decided whether it
failed. Here a plain viewer gets its own app model too, the way napari's ``mock_app_model``
fixture makes one (usable in a module-scoped fixture)."""

from __future__ import annotations

import contextlib
import itertools
from unittest.mock import patch

_names = itertools.count()


@contextlib.contextmanager
def plain_viewer(*, width: int = 1600, height: int = 1000):
    """Yield a shown ``napari.Viewer`` of ``width`` x ``height`` with its own app model; closed at exit."""
    import napari
    from app_model import Application
    from napari._app_model._app import NapariApplication, _napari_names
    from napari._qt._qapp_model.qactions import init_qactions
    from napari.plugins import _initialize_plugins

    name = f"carspatial_test_app_{next(_names)}"
    app = NapariApplication(name)
    app.injection_store.namespace = _napari_names
    _initialize_plugins.cache_clear()
    init_qactions.cache_clear()
    with patch.object(NapariApplication, "get_app_model", return_value=app):
        viewer = napari.Viewer(show=True)
        try:
            viewer.window.resize(width, height)
            yield viewer
        finally:
            viewer.close()
            Application.destroy(name)
            _initialize_plugins.cache_clear()
            init_qactions.cache_clear()
