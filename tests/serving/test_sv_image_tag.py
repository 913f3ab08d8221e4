"""The control plane names a platform runtime's image with the build's own function (no script)."""

from __future__ import annotations

from models_repo.models import RuntimeEnvironment
from runtimes.images.tag import image_tag
from serving.reconciler import support


def test_platform_runtime_image_is_named_by_the_tag_function():
    support._print_tag.cache_clear()
    public = RuntimeEnvironment(name="angel", runtime="angel", image="")
    assert support.image_for(public) == image_tag("angel")


def test_an_image_with_a_tag_is_used_as_given():
    custom = RuntimeEnvironment(name="mine", runtime="angel", image="registry.local/mine:v2")
    assert support.image_for(custom) == "registry.local/mine:v2"
