"""`carspatial demo` / `carspatial open` build the viewer the README promises (without the event loop)."""

from __future__ import annotations


def test_cli_viewer_has_demo_layers_and_docks(qtbot, monkeypatch, mock_app_model):
    # mock_app_model: a fresh napari app (as make_napari_viewer uses), so plugins register once

    from napari_carspatial import cli
    from napari_carspatial._napari import META_ROLE, session_for
    from napari_carspatial.datasets import demo_sample

    viewer = cli._open_viewer([demo_sample(size=512, seed=1)], title="test")
    try:
        names = [lyr.name for lyr in viewer.layers]
        assert "DAPI" in names
        assert "DEMO-001_post cells" in names
        # the hidden channels arrive right after the first frame
        qtbot.waitUntil(lambda: "SMA" in [lyr.name for lyr in viewer.layers], timeout=15000)
        # the Review workflow: the class list above Channels, Cell inspector, Measurements, Samples
        from napari_carspatial.widgets import workflows

        assert workflows.current_workflow(viewer) == "Review"
        for name in ("Legend", *workflows.WORKFLOWS["Review"]):
            assert workflows.find_dock(viewer, name) is not None, name
        assert workflows.find_dock(viewer, "Gating") is None      # made when its workflow is chosen
        # the legend colours by cell type; the gating preview is not on the slide
        roles = [lyr.metadata.get(META_ROLE) for lyr in viewer.layers]
        assert not any(lyr.name.endswith("gate preview") and lyr.visible for lyr in viewer.layers)
        assert len(session_for(viewer).samples()) == 1
        assert "labels" in roles
    finally:
        viewer.close()


def test_cli_main_demo_runs_without_event_loop(monkeypatch, qtbot, mock_app_model):
    """`carspatial demo` end to end, with napari.run replaced (it would block)."""
    import napari

    from napari_carspatial import cli

    opened = []
    monkeypatch.setattr(napari, "run", lambda *a, **k: opened.append(napari.current_viewer()))
    assert cli.main(["demo", "--size", "512"]) == 0
    assert opened
    assert opened[0] is not None
    opened[0].close()
