"""The release file is read from the ISO a Version names, over HTTP Range requests, as Harvester reads it."""
from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pycdlib
import pytest
import yaml
from aiohttp import web

from infra.cluster import Release
from infra.harvester.releases import ReleaseFileUnreadable, release_file_from_iso

RELEASE = {"harvester": "v9.9.9", "os": "Harvester v9.9.9", "kubernetes": "v1.32.4+rke2r1",
           "rancherDependencies": {"fleet": {"chart": "106.1.1+up0.12.3", "app": "0.12.3"}}}


def _iso(path: Path, content: bytes) -> None:
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, rock_ridge="1.09", vol_ident="HARVESTER")
    iso.add_fp(io.BytesIO(content), len(content), "/HARVESTER_RELEASE.YAML;1", rr_name="harvester-release.yaml")
    filler = b"\0" * (4 * 1024 * 1024)        # something big beside it: the reader must not fetch it
    iso.add_fp(io.BytesIO(filler), len(filler), "/ROOTFS.SQU;1", rr_name="rootfs.squashfs")
    iso.write(str(path))
    iso.close()


@pytest.fixture
def release_server(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """An HTTP release server on 127.0.0.1 that answers Range requests and records them."""
    _iso(tmp_path / "harvester-v9.9.9-amd64.iso", yaml.safe_dump(RELEASE).encode())
    ranges: list[str] = []
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state: dict[str, object] = {}

    async def serve(request: web.Request) -> web.StreamResponse:
        ranges.append(request.headers.get("Range", "(whole file)"))
        target = tmp_path / request.match_info["name"]
        if not target.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(target)

    async def start() -> None:
        app = web.Application()
        app.router.add_get("/harvester/{name}", serve)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        state["runner"], state["port"] = runner, site._server.sockets[0].getsockname()[1]  # noqa: SLF001
        ready.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(start()), loop.run_forever()), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield f"http://127.0.0.1:{state['port']}/harvester", ranges
    finally:
        asyncio.run_coroutine_threadsafe(cast(web.AppRunner, state["runner"]).cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def test_the_release_file_comes_from_the_iso_without_downloading_it(release_server: tuple[str, list[str]]) -> None:
    base, ranges = release_server
    found = release_file_from_iso(Release("v9.9.9", f"{base}/harvester-v9.9.9-amd64.iso"))
    assert found == RELEASE
    assert ranges and "(whole file)" not in ranges[1:]          # HEAD, then ranges only
    assert len(ranges) < 10, ranges                              # a few blocks, not the 4 MiB beside it


def test_a_wrong_iso_url_says_where_it_looked(release_server: tuple[str, list[str]]) -> None:
    base, _ = release_server
    with pytest.raises(ReleaseFileUnreadable, match=r"could not read harvester-release.yaml from the ISO "
                                                     r"http://127.0.0.1:\d+/harvester/nosuch.iso: .*404"):
        release_file_from_iso(Release("v9.9.9", f"{base}/nosuch.iso"))
