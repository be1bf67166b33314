"""The asyncio client against a real flotta-server process."""

from __future__ import annotations

import asyncio

import pytest
from conftest import Server, workload

import flotta


@pytest.fixture
def aclient(server: Server) -> flotta.AsyncClient:
    return flotta.AsyncClient.from_config(server.admin_yaml)


@pytest.mark.asyncio
async def test_async_crud(aclient: flotta.AsyncClient, unique: str) -> None:
    name = f"aweb-{unique}"
    created = await aclient.workloads.create(workload(name, {"site": unique}))
    assert created.name == name
    got = await aclient.workloads.get(name)
    assert got.metadata.uid == created.metadata.uid
    got.labels["stage"] = "beta"
    updated = await aclient.workloads.update(got)
    assert updated.labels["stage"] == "beta"
    patched = await aclient.workloads.patch(name, {"metadata": {"labels": {"stage": "ga"}}})
    assert patched.labels["stage"] == "ga"
    assert [w.name for w in await aclient.workloads.list(label_selector=f"app={name}")] == [name]
    await aclient.workloads.delete(name)
    with pytest.raises(flotta.NotFound):
        await aclient.workloads.get(name)


@pytest.mark.asyncio
async def test_async_calls_run_concurrently(aclient: flotta.AsyncClient, unique: str) -> None:
    names = [f"many-{unique}-{i}" for i in range(8)]
    created = await asyncio.gather(*(aclient.workloads.create(workload(n, {"site": unique})) for n in names))
    assert sorted(w.name for w in created) == names
    listed = await aclient.workloads.list(label_selector=f"app in ({','.join(names)})")
    assert sorted(w.name for w in listed) == names
    await asyncio.gather(*(aclient.workloads.delete(n) for n in names))


@pytest.mark.asyncio
async def test_async_watch_apply_and_approve(aclient: flotta.AsyncClient, unique: str) -> None:
    name = f"awatch-{unique}"
    seen: list[tuple[str, str]] = []
    async with aclient.workloads.watch(label_selector=f"app={name}") as watch:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(watch.__anext__(), 0.5)  # connected, nothing yet
        outcomes = await aclient.apply([workload(name, {"site": unique})])
        assert [o.action for o in outcomes] == ["created"]
        await aclient.workloads.delete(name)
        async for event in watch:
            assert event.object is not None
            seen.append((event.type, event.object.name))
            if event.type == "DELETED":
                break
    assert seen == [("ADDED", name), ("DELETED", name)]

    request = f"adev-{unique}"
    await aclient.signed_requests.create(flotta.EdgeDeviceSignedRequest(request, spec={"targetNamespace": "default"}))
    approved = await aclient.approve(request)
    assert approved.spec.approved is True
    await aclient.signed_requests.delete(request)


@pytest.mark.asyncio
async def test_async_errors(server: Server) -> None:
    bad = flotta.AsyncClient(server.api_url, token="flt_nope", ca=server.ca)
    with pytest.raises(flotta.Unauthorized):
        await bad.devices.list()
