"""The Data Docs site is made readable offline: every CDN/S3 asset of GX's templates maps to a vendored file."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

from shadowing.quality.data_docs import _ASSETS, VENDOR_DIR, make_offline, remote_asset_references

# Located without importing GX (seconds): the templates of the installed version are what gets rendered.
GX_TEMPLATES = Path(find_spec("great_expectations").origin).parent / "render" / "view" / "templates"  # type: ignore[arg-type, union-attr]


def test_every_cdn_asset_of_the_installed_gx_templates_is_vendored() -> None:
    used = set()
    for template in GX_TEMPLATES.glob("*.j2"):
        used |= set(remote_asset_references(template.read_text()))
    cdn = {u for u in used if "great-expectations-web-assets" not in u and "{{" not in u}
    assert cdn, "the GX templates no longer load anything from a CDN? then this mapping can go"
    assert cdn <= set(_ASSETS), f"GX loads assets we do not vendor: {sorted(cdn - set(_ASSETS))}"
    for local in _ASSETS.values():
        assert (VENDOR_DIR / local).is_file(), local


def test_make_offline_rewrites_links_relative_to_each_page(tmp_path: Path) -> None:
    cdn = "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css"
    popper = "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js"
    page = (f'<link rel="stylesheet" href="{cdn}"/><script src="{popper}" integrity="sha384-x" '
            'crossorigin="anonymous"></script><img src="https://great-expectations-web-assets.s3.us-east-2.'
            'amazonaws.com/logo-long.png?d=20261126T000000Z"/><a href="https://greatexpectations.io">GX</a>')
    (tmp_path / "validations" / "suite").mkdir(parents=True)
    (tmp_path / "static" / "styles").mkdir(parents=True)
    (tmp_path / "index.html").write_text(page)
    (tmp_path / "validations" / "suite" / "r.html").write_text(page)
    (tmp_path / "static" / "styles" / "s.css").write_text(
        "a{background:url('https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/full_logo_dark.png')}")
    assert len(remote_asset_references(page)) == 3  # the plain link to GX's home page is no fetch

    make_offline(tmp_path)

    index = (tmp_path / "index.html").read_text()
    nested = (tmp_path / "validations" / "suite" / "r.html").read_text()
    css = (tmp_path / "static" / "styles" / "s.css").read_text()
    assert remote_asset_references(index) == remote_asset_references(nested) == remote_asset_references(css) == []
    assert 'href="static/vendor/bootstrap/bootstrap.min.css"' in index and "integrity" not in index
    assert 'src="../../static/vendor/popper.js/popper.min.js"' in nested
    assert "url('../../static/images/logo-long.png')" in css  # from static/styles/: the site's root, then down
    assert (tmp_path / "static" / "vendor" / "fontawesome" / "webfonts" / "fa-solid-900.woff2").is_file()
