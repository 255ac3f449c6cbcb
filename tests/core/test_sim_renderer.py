"""What `tsg sim record` says when MuJoCo cannot open a renderer (trusted_scene_graph.sim.fetch.open_renderer)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from trusted_scene_graph.sim import SimError
from trusted_scene_graph.sim.fetch import open_renderer


class _FatalError(Exception):
    pass


def _mujoco_failing_with(message: str) -> SimpleNamespace:
    def renderer(model, height, width):
        raise RuntimeError(message)

    return SimpleNamespace(Renderer=renderer, FatalError=_FatalError)


@pytest.mark.parametrize("backend", ["egl", "osmesa"])
def test_with_a_headless_backend_the_size_is_named_as_the_likely_cause(backend, monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", backend)
    with pytest.raises(SimError, match=rf"cannot create a 9000x9000 MuJoCo renderer \(Offscreen framebuffer is not "
                                       rf"complete\); the GL backend MUJOCO_GL='{backend}' is headless, so the size is "
                                       r"the likely cause: try a smaller --width/--height"):
        open_renderer(_mujoco_failing_with("Offscreen framebuffer is not complete"), None, 9000, 9000)


def test_without_a_headless_backend_the_backend_is_named(monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "glfw")
    with pytest.raises(SimError, match=r"headless machines need MUJOCO_GL=egl \(or osmesa\), currently "
                                       r"MUJOCO_GL='glfw'"):
        open_renderer(_mujoco_failing_with("gladLoadGL error"), None, 320, 240)
