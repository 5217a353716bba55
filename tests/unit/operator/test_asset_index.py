"""The index of VideoAssets by the platform they name."""

from vod_operator.asset_index import AssetIndex


def test_assets_are_found_by_their_platform_in_their_namespace() -> None:
    index = AssetIndex()
    index.set(("a", "one"), "tv", "Pending")
    index.set(("a", "two"), "tv", None)
    index.set(("a", "three"), "radio", "Ready")
    index.set(("b", "four"), "tv", "Pending")
    assert index.of_platform(("a", "tv")) == [("a", "one"), ("a", "two")]
    assert index.of_platform(("b", "tv")) == [("b", "four")]
    assert index.of_platform(("a", "missing")) == []
    assert index.get(("a", "three")) == ("radio", "Ready")
    assert len(index) == 4


def test_an_asset_moved_to_another_platform_leaves_the_first_ones_list() -> None:
    index = AssetIndex()
    index.set(("a", "one"), "tv", "Pending")
    index.set(("a", "one"), "radio", "Pending")
    assert index.of_platform(("a", "tv")) == []
    assert index.of_platform(("a", "radio")) == [("a", "one")]
    assert len(index) == 1


def test_a_deleted_asset_is_forgotten_everywhere() -> None:
    index = AssetIndex()
    index.set(("a", "one"), "tv", "Ready")
    index.pop(("a", "one"))
    index.pop(("a", "never-seen"))
    assert index.get(("a", "one")) is None
    assert index.of_platform(("a", "tv")) == []
    assert len(index) == 0
