"""Fetch the JavaScript the static book needs into ``.assets/static`` so that no page request leaves the site.

Run ``python book/_ext/assets.py`` (``make book`` does; the Sphinx extension does too when a build starts).

* plotly.js comes from the installed ``plotly`` wheel (always available: plotly is a dependency);
* MathJax 3, mermaid, the ipywidgets HTML manager and require.js come from the npm registry with ``npm pack``
  (a tarball download, no ``node_modules``). Nothing third-party is committed: ``.assets/`` is git-ignored.

Without npm the book still builds: those four load from a CDN and the pages need the internet
(:func:`ensure_assets` returns what is missing and the caller prints a warning).
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / ".assets"
STATIC = ASSETS / "static"  # one of Sphinx's html_static_path entries: copied to _build/html/_static/


@dataclass(frozen=True)
class NpmAsset:
    """Files of one npm package the pages load, copied from the tarball's ``package/`` to ``STATIC/<dest>``."""

    package: str  # name@version: fixed versions, so that a build is reproducible
    dest: str
    keep: tuple[str, ...]  # fnmatch patterns of paths inside the package ("*" also crosses "/")

    @property
    def stamp(self) -> Path:
        return STATIC / self.dest / ".package"  # dot-files are not copied into the site

    def present(self) -> bool:
        return self.stamp.is_file() and self.stamp.read_text().strip() == self.package


NPM_ASSETS = (
    # MathJax 3: the combined TeX+MathML -> CHTML component, its fonts and the pieces it loads lazily.
    NpmAsset("mathjax@3.2.2", "mathjax", ("es5/tex-mml-chtml.js", "es5/output/chtml/fonts/woff-v2/*",
                                          "es5/input/tex/extensions/*", "es5/ui/*", "es5/a11y/*")),
    # Mermaid 11, the version sphinxcontrib-mermaid 2.x defaults to, as ONE classic script: its ES-module build
    # cannot load from file:// (browsers block module imports there), and a downloaded book must open from disk.
    NpmAsset("mermaid@11.12.1", "mermaid", ("dist/mermaid.min.js",)),
    # The ipywidgets 8 HTML manager that renders saved widget state without a kernel, and its icon fonts
    # (woff2 only: every browser that runs the rest of the page reads it).
    NpmAsset("@jupyter-widgets/html-manager@1.0.15", "widgets", ("dist/embed-amd.js", "dist/*.woff2")),
    NpmAsset("requirejs@2.3.7", "requirejs", ("require.js",)),
)  # fmt: skip


def plotly_js() -> Path:
    """Copy plotly.min.js from the installed plotly wheel (once per plotly version)."""
    import plotly
    from plotly.offline import get_plotlyjs

    target = STATIC / "plotly" / "plotly.min.js"
    stamp = target.with_name(".version")
    if not (target.is_file() and stamp.is_file() and stamp.read_text() == plotly.__version__):
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(get_plotlyjs(), encoding="utf-8")
        stamp.write_text(plotly.__version__)
    return target


def _npm_pack(package: str, workdir: Path) -> Path:
    out = subprocess.run(
        ["npm", "pack", package, "--json", "--silent"],
        cwd=workdir,
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return workdir / json.loads(out.stdout)[0]["filename"]


def _extract(asset: NpmAsset, tarball: Path) -> None:
    dest = STATIC / asset.dest
    if dest.exists():
        shutil.rmtree(dest)
    with tarfile.open(tarball) as tar:
        for member in tar.getmembers():
            if not member.isfile():
                continue
            rel = member.name.removeprefix("package/")
            if rel.endswith(".map") or not any(fnmatch.fnmatchcase(rel, k) for k in asset.keep):
                continue
            # Flatten the kept prefix's parents: "dist/chunks/x.mjs" -> "chunks/x.mjs", "es5/ui/x.js" -> "ui/x.js".
            top = rel.split("/", 1)[1] if "/" in rel and rel.split("/", 1)[0] in ("dist", "es5") else rel
            target = (dest / top).resolve()
            if dest.resolve() not in target.parents:
                raise RuntimeError(f"refusing to extract {member.name!r} outside {dest}")
            target.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as src:  # type: ignore[union-attr]
                target.write_bytes(src.read())
    asset.stamp.write_text(asset.package)


def ensure_assets(verbose: bool = True) -> list[str]:
    """Make every asset local; return the npm packages still missing (empty when the book is self-contained)."""
    plotly_js()
    todo = [a for a in NPM_ASSETS if not a.present()]
    if not todo:
        return []
    if shutil.which("npm") is None:
        return [a.package for a in todo]
    missing = []
    with tempfile.TemporaryDirectory(prefix="palmbook-npm-") as tmp:
        for asset in todo:
            if verbose:
                print(f"palmbook: fetching {asset.package} from the npm registry", file=sys.stderr)
            try:
                _extract(asset, _npm_pack(asset.package, Path(tmp)))
            except (subprocess.SubprocessError, OSError, ValueError, KeyError, tarfile.TarError) as e:
                print(f"palmbook: could not fetch {asset.package}: {e}", file=sys.stderr)
                missing.append(asset.package)
    return missing


def cdn_warning(missing: list[str]) -> str:
    return (
        "palmbook: WARNING: "
        + ", ".join(missing)
        + " could not be made local "
        + ("(npm is not installed)" if shutil.which("npm") is None else "(npm pack failed)")
        + ": the built pages will load them from a CDN and need the internet. "
        "Install Node.js/npm (e.g. `apt-get install npm`) and rebuild for a self-contained book."
    )


def main() -> int:
    """Fetch the assets (``make book`` runs this first). Exit 1 if any is missing and PALMBOOK_REQUIRE_ASSETS=1:
    the publishing workflow sets it, because a published book must not depend on a CDN."""
    os.chdir(ROOT)
    missing = ensure_assets()
    if missing:
        print(cdn_warning(missing), file=sys.stderr)
        if os.environ.get("PALMBOOK_REQUIRE_ASSETS") == "1":
            return 1
    else:
        size = sum(f.stat().st_size for f in STATIC.rglob("*") if f.is_file())
        print(f"palmbook: book assets ready in {STATIC.relative_to(ROOT)} ({size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
