"""``requirements.txt`` on the hosted images, from their published package lists: pip resolves it for the image's
Python against a stand-in environment holding exactly the image's packages. Needs the package registry."""

import pytest

from utils.scripts.hosted import IMAGES, markdown, read_freeze, resolve


def test_a_freeze_list_is_read_with_its_pinned_and_url_lines(tmp_path):
    freeze = tmp_path / "freeze.txt"
    freeze.write_text("# comment\nTorch==2.11.0+cu128\nsafe_tensors==0.5\n"
                      "google-colab @ file:///colabtools/dist/google_colab-1.0.0.tar.gz\nodd @ git+https://x/y@abc\n")
    assert read_freeze(freeze) == {"torch": "2.11.0+cu128", "safe-tensors": "0.5", "google-colab": "1.0.0"}


@pytest.mark.registry
@pytest.mark.parametrize("image", list(IMAGES))
def test_the_install_keeps_the_images_torch(image):
    result = resolve(image)
    assert result["torch"] and result["replaces_kept_whole"] == [], result["replaced"]
    assert "unsloth" in " ".join(result["added"])  # the install really resolved the kit's requirements


def test_the_readme_table_names_each_image_and_what_is_replaced(tmp_path):
    import json

    path = tmp_path / "hosted.json"
    image = {"image": "Colab GPU", "python": "3.13", "package_list": "list (2026-08-19)", "torch": "2.11.0+cu128",
             "replaced": {"pyarrow": ["18.1.0", "26.0.1"]}, "added": ["unsloth 2026.10.9"], "replaces_kept_whole": []}
    path.write_text(json.dumps({"date": "2026-12-06", "command": "python -m utils.scripts.hosted", "images": [image]}))
    row = "| Colab GPU (list (2026-08-19)) | 3.13 | 2.11.0+cu128, kept | pyarrow 18.1.0 → 26.0.1 | 1 |"
    assert row in markdown(path)
