"""The official Python `kubernetes` client against a real flotta-server process:
discovery, then the dynamic client listing and watching EdgeDevices."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Server, server_binary

import flotta

kubernetes = pytest.importorskip("kubernetes")
from kubernetes import client as k8s  # noqa: E402
from kubernetes import config as k8s_config  # noqa: E402
from kubernetes import dynamic  # noqa: E402

API_VERSION = "management.project-flotta.io/v1alpha1"
WATCH_TIMEOUT = 30


def configuration(server: Server) -> Any:
    """A `kubernetes.client.Configuration` as a user writes it by hand: the server
    URL, the admin token as a bearer token, and the server's CA."""
    config = k8s.Configuration()
    config.host = server.api_url
    config.api_key = {"authorization": server.token()}
    config.api_key_prefix = {"authorization": "Bearer"}
    config.ssl_ca_cert = str(server.ca)
    return config


@pytest.fixture
def devices(client: flotta.Client, unique: str) -> Iterator[list[str]]:
    """Three devices labelled `fleet=<unique>`, two at `site=lab`, one at `site=field`."""
    names = [f"edge-{unique}-{i}" for i in range(3)]
    for name, site in zip(names, ["lab", "lab", "field"]):
        client.devices.create({"metadata": {"name": name, "labels": {"fleet": unique, "site": site}}, "spec": {}})
    yield names
    for name in names:
        client.devices.delete(name)


def edge_devices(api_client: Any) -> Any:
    """The EdgeDevice resource, found through discovery (/api, /apis and the group's
    APIResourceList)."""
    resource = dynamic.DynamicClient(api_client).resources.get(api_version=API_VERSION, kind="EdgeDevice")
    assert resource.name == "edgedevices"
    assert resource.namespaced
    return resource


def test_dynamic_client_lists_edge_devices_with_label_selectors(
    server: Server, devices: list[str], unique: str
) -> None:
    resource = edge_devices(k8s.ApiClient(configuration(server)))

    listed = resource.get(namespace="default", label_selector=f"fleet={unique}")
    assert listed.kind == "EdgeDeviceList"
    assert listed.metadata.resourceVersion
    by_name = {item.metadata.name: dict(item.metadata.labels) for item in listed.items}
    assert by_name == {
        devices[0]: {"fleet": unique, "site": "lab"},
        devices[1]: {"fleet": unique, "site": "lab"},
        devices[2]: {"fleet": unique, "site": "field"},
    }
    assert all(item.kind == "EdgeDevice" and item.apiVersion == API_VERSION for item in listed.items)

    lab = resource.get(namespace="default", label_selector=f"fleet={unique},site in (lab)")
    assert sorted(item.metadata.name for item in lab.items) == devices[:2]
    not_lab = resource.get(namespace="default", label_selector=f"fleet={unique},site!=lab")
    assert [item.metadata.name for item in not_lab.items] == [devices[2]]
    assert resource.get(namespace="default", label_selector=f"fleet={unique},site=moon").items == []

    one = resource.get(namespace="default", name=devices[2])
    assert one.metadata.labels.site == "field"


def test_dynamic_client_watch_sees_a_device_relabelled(
    server: Server, client: flotta.Client, devices: list[str], unique: str
) -> None:
    resource = edge_devices(k8s.ApiClient(configuration(server)))

    # Without a resourceVersion the stream starts with the current objects as ADDED:
    # once all three arrived the watch is live, and the change is made.
    events = resource.watch(namespace="default", label_selector=f"fleet={unique}", timeout=WATCH_TIMEOUT)
    added: set[str] = set()
    for event in events:
        assert event["type"] == "ADDED", event["type"]
        added.add(event["object"].metadata.name)
        if added == set(devices):
            break
    assert added == set(devices), f"initial ADDED events: {sorted(added)}"
    client.devices.patch(devices[1], {"metadata": {"labels": {"stage": "canary"}}})
    modified = None
    for event in events:
        if event["type"] == "MODIFIED" and event["object"].metadata.name == devices[1]:
            modified = event
            break
    assert modified is not None, f"no MODIFIED event for {devices[1]} within {WATCH_TIMEOUT} s"
    assert dict(modified["object"].metadata.labels) == {"fleet": unique, "site": "lab", "stage": "canary"}
    assert modified["raw_object"]["kind"] == "EdgeDevice"
    events.close()


def test_watch_resumes_from_a_list_s_resource_version(server: Server, client: flotta.Client, devices: list[str], unique: str) -> None:
    resource = edge_devices(k8s.ApiClient(configuration(server)))
    listed = resource.get(namespace="default", label_selector=f"fleet={unique}")
    # The change lands before the watch starts: resuming from the list's version
    # must still deliver it, and nothing from before the list.
    client.devices.patch(devices[0], {"metadata": {"labels": {"site": "field"}}})
    events = resource.watch(
        namespace="default",
        label_selector=f"fleet={unique}",
        resource_version=listed.metadata.resourceVersion,
        timeout=WATCH_TIMEOUT,
    )
    first = next(iter(events), None)
    assert first is not None, f"no event within {WATCH_TIMEOUT} s"
    assert first["type"] == "MODIFIED"
    assert first["object"].metadata.name == devices[0]
    assert first["object"].metadata.labels.site == "field"
    events.close()


def test_a_kubeconfig_written_by_flotta_loads_in_the_kubernetes_client(
    server: Server, devices: list[str], unique: str, tmp_path: Path
) -> None:
    cli = server_binary().with_name("flotta")
    if not cli.exists():
        pytest.skip(f"{cli} not built (cargo build -p flotta-cli)")
    kubeconfig = tmp_path / "kubeconfig"
    subprocess.run(
        [str(cli), "--config", str(server.admin_yaml), "kubeconfig", "-o", str(kubeconfig)],
        check=True,
    )
    resource = edge_devices(k8s_config.new_client_from_config(config_file=str(kubeconfig)))
    listed = resource.get(namespace="default", label_selector=f"fleet={unique},site=field")
    assert [item.metadata.name for item in listed.items] == [devices[2]]
