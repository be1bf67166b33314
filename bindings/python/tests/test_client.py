"""The blocking client against a real flotta-server process."""

from __future__ import annotations

import threading
import time

import pytest
from conftest import Server, workload

import flotta


def test_crud_round_trip(client: flotta.Client, unique: str) -> None:
    name = f"web-{unique}"
    created = client.workloads.create(workload(name, {"site": unique}))
    assert isinstance(created, flotta.EdgeWorkload)
    assert created.name == name
    assert created.namespace == "default"
    assert created.resource_version
    assert created.metadata.uid

    fetched = client.workloads.get(name)
    assert fetched.spec.device_selector.match_labels == {"site": unique}

    fetched.spec.pod.spec.containers[0]["image"] = "registry.local/app:2"
    updated = client.workloads.update(fetched)
    assert updated.spec.pod.spec.containers[0].image == "registry.local/app:2"
    assert updated.resource_version != created.resource_version

    patched = client.workloads.patch(name, {"metadata": {"labels": {"stage": "canary"}}})
    assert patched.labels == {"app": name, "stage": "canary"}

    listed = client.workloads.list(label_selector=f"app={name}")
    assert [w.name for w in listed] == [name]
    assert client.workloads.list(namespace="default", label_selector="app=none-such") == []

    deleted = client.workloads.delete(name)
    assert deleted.name == name
    with pytest.raises(flotta.NotFound) as caught:
        client.workloads.get(name)
    assert caught.value.status == 404
    assert caught.value.reason == "NotFound"
    assert name in caught.value.server_message
    assert isinstance(caught.value, LookupError)


def test_create_accepts_dicts_and_conflicts_are_reported(client: flotta.Client, unique: str) -> None:
    name = f"lab-{unique}"
    device_set = client.device_sets.create(
        {"metadata": {"name": name, "labels": {"site": unique}}, "spec": {"selector": {"matchLabels": {"site": unique}}}}
    )
    assert isinstance(device_set, flotta.EdgeDeviceSet)
    with pytest.raises(flotta.Conflict) as exists:
        client.device_sets.create(device_set)
    assert exists.value.status == 409

    stale = client.device_sets.get(name)
    fresh = client.device_sets.get(name)
    fresh.labels["touched"] = "yes"
    client.device_sets.update(fresh)
    stale.labels["touched"] = "late"
    with pytest.raises(flotta.Conflict) as conflict:
        client.device_sets.update(stale)
    assert conflict.value.status == 409
    assert client.device_sets.get(name).labels["touched"] == "yes"
    client.device_sets.delete(name)


def test_server_side_validation_is_invalid(client: flotta.Client, unique: str) -> None:
    with pytest.raises(flotta.Invalid) as caught:
        client.device_sets.create(
            {"metadata": {"name": f"bad-{unique}"}, "spec": {"selector": {"matchLabels": {"a": "b"}}, "heartbeat": {"periodSeconds": 0}}}
        )
    assert caught.value.status == 422
    assert "periodSeconds" in caught.value.server_message
    assert isinstance(caught.value, flotta.BadRequest)


def test_field_and_label_selectors(client: flotta.Client, unique: str) -> None:
    names = [f"sel-{unique}-{i}" for i in range(3)]
    for i, name in enumerate(names):
        client.workloads.create(workload(name, {"site": unique}).copy() if i else workload(name, {"site": unique}))
    found = client.workloads.list(field_selector=f"metadata.name={names[1]}")
    assert [w.name for w in found] == [names[1]]
    with pytest.raises(flotta.BadRequest):
        client.workloads.list(field_selector="spec.nonsense=1")
    with pytest.raises(flotta.BadRequest):
        client.workloads.list(label_selector="a in (")
    for name in names:
        client.workloads.delete(name)


def test_bad_token_and_unreachable_server(server: Server) -> None:
    bad = flotta.Client(server.api_url, token="flt_wrong", ca=server.ca)
    with pytest.raises(flotta.Unauthorized) as caught:
        bad.devices.list()
    assert caught.value.status == 401
    # CA given as PEM text works the same as a path.
    pem = flotta.Client(server.api_url, token=server.token(), ca=server.ca.read_text())
    assert isinstance(pem.devices.list(), list)
    closed = flotta.Client("https://127.0.0.1:9", token="t", ca=server.ca, timeout=5)
    with pytest.raises(flotta.TransportError) as unreachable:
        closed.devices.list()
    assert isinstance(unreachable.value, ConnectionError)
    with pytest.raises(flotta.ConfigError):
        flotta.Client.from_config(server.data_dir / "missing.yaml")


def test_from_config_uses_flotta_config(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOTTA_CONFIG", str(server.admin_yaml))
    client = flotta.Client.from_config()
    assert client.server == server.api_url
    assert isinstance(client.workloads.list(), list)


def test_watch_sees_changes_in_order(client: flotta.Client, unique: str) -> None:
    name = f"watched-{unique}"
    with client.workloads.watch(label_selector=f"app={name}") as watch:
        assert watch.next(timeout=0.5) is None  # nothing matches yet
        client.workloads.create(workload(name, {"site": unique}))
        client.workloads.patch(name, {"metadata": {"labels": {"stage": "b"}}})
        client.workloads.delete(name)
        seen = []
        for event in watch:
            assert event.object is not None
            seen.append((event.type, event.object.name, event.object.labels.get("stage")))
            if event.type == "DELETED":
                break
    assert seen == [("ADDED", name, None), ("MODIFIED", name, "b"), ("DELETED", name, "b")]


def test_blocking_calls_release_the_gil(client: flotta.Client, unique: str) -> None:
    # A watch blocked in Rust must not stop another Python thread from working.
    name = f"gil-{unique}"
    received: list[str] = []
    watch = client.workloads.watch(label_selector=f"app={name}")

    def consume() -> None:
        for event in watch:
            received.append(event.type)
            return

    thread = threading.Thread(target=consume)
    thread.start()
    ticks = 0
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        ticks += 1
    assert ticks > 1000
    client.workloads.create(workload(name, {"site": unique}))
    thread.join(timeout=30)
    assert received == ["ADDED"]
    watch.close()
    client.workloads.delete(name)


def test_apply_creates_updates_and_reports_failures(client: flotta.Client, unique: str) -> None:
    manifest = f"""\
apiVersion: management.project-flotta.io/v1alpha1
kind: EdgeDeviceSet
metadata:
  name: set-{unique}
spec:
  selector:
    matchLabels:
      site: "{unique}"
---
apiVersion: management.project-flotta.io/v1alpha1
kind: EdgeWorkload
metadata:
  name: app-{unique}
spec:
  type: pod
  deviceSelector:
    matchLabels:
      site: "{unique}"
  pod:
    spec:
      containers:
      - name: app
        image: app:1
"""
    first = client.apply(manifest)
    assert [(o.kind, o.name, o.action) for o in first] == [
        ("EdgeDeviceSet", f"set-{unique}", "created"),
        ("EdgeWorkload", f"app-{unique}", "created"),
    ]
    assert [o.action for o in client.apply(manifest)] == ["unchanged", "unchanged"]
    changed = client.apply(manifest.replace("app:1", "app:2"))
    assert [o.action for o in changed] == ["unchanged", "configured"]
    assert client.workloads.get(f"app-{unique}").spec.pod.spec.containers[0].image == "app:2"

    # Resources apply too, and a failing document does not stop the others.
    extra = workload(f"more-{unique}", {"site": unique})
    with pytest.raises(flotta.ApplyError) as caught:
        client.apply("kind: Gizmo\nmetadata: {name: g}\n---\n" + extra.to_yaml())
    outcomes = caught.value.outcomes
    assert outcomes[0].action is None
    assert isinstance(outcomes[0].error, flotta.ManifestError)
    assert outcomes[1].action == "created"
    assert [o.index for o in caught.value.failures] == [0]
    assert [o.action for o in client.apply([extra])] == ["unchanged"]
    for name in (f"app-{unique}", f"more-{unique}"):
        client.workloads.delete(name)
    client.device_sets.delete(f"set-{unique}")


def test_approve_sets_the_signed_request_approved(client: flotta.Client, unique: str) -> None:
    name = f"dev-{unique}"
    client.signed_requests.create(
        flotta.EdgeDeviceSignedRequest(name, spec={"targetNamespace": "default", "approved": False})
    )
    approved = client.approve(name)
    assert isinstance(approved, flotta.EdgeDeviceSignedRequest)
    assert approved.spec.approved is True
    assert client.signed_requests.get(name).spec.approved is True
    with pytest.raises(flotta.NotFound):
        client.approve(f"none-{unique}")
    client.signed_requests.delete(name)


def test_enrolment_decisions_are_events_listed_and_watched(client: flotta.Client, unique: str) -> None:
    name = f"ev-{unique}"
    request = client.signed_requests.create(
        flotta.EdgeDeviceSignedRequest(name, spec={"targetNamespace": "default"})
    )
    about = f"involvedObject.kind=EdgeDeviceSignedRequest,involvedObject.name={name}"
    with client.events.watch("default", field_selector=about) as watch:
        client.deny(name)
        client.approve(name)
        reasons = set()
        for event in watch:
            assert isinstance(event.object, flotta.Event)
            reasons.add(event.object.reason)
            if reasons == {"EnrolmentDenied", "EnrolmentApproved"}:
                break
    listed = client.events_for(request)
    # Both happened within the same second: their order is not defined.
    assert sorted((e.reason, e.type) for e in listed) == [
        ("EnrolmentApproved", "Normal"),
        ("EnrolmentDenied", "Warning"),
    ]
    assert all(e.involved == ("EdgeDeviceSignedRequest", name) for e in listed)
    assert all(e.count == 1 for e in listed)
    warnings = client.events.list("default", field_selector=f"{about},type=Warning")
    assert [e.reason for e in warnings] == ["EnrolmentDenied"]
    with pytest.raises(flotta.BadRequest):
        client.events.list("default", field_selector="involvedObject.colour=red")
    with pytest.raises(TypeError):
        flotta.Event("mine")
    client.signed_requests.delete(name)


def test_secrets_and_config_maps(client: flotta.Client, unique: str) -> None:
    name = f"db-{unique}"
    created = client.secrets.create(flotta.Secret(name, data={"key": b"\x00\x01"}, string_data={"password": "hunter2"}))
    assert isinstance(created, flotta.Secret)
    assert created.value("password") == b"hunter2"
    assert created.value("key") == b"\x00\x01"
    assert created["apiVersion"] == "v1"
    assert "hunter2" not in repr(created)
    assert [s.name for s in client.secrets.list(field_selector=f"metadata.name={name}")] == [name]

    config = client.config_maps.create(flotta.ConfigMap(f"app-{unique}", data={"MODE": "fast"}))
    assert isinstance(config, flotta.ConfigMap)
    assert client.config_maps.get(config.name).data["MODE"] == "fast"
    client.secrets.delete(name)
    client.config_maps.delete(config.name)


def test_server_side_apply_owns_fields_and_names_conflicts(client: flotta.Client, unique: str) -> None:
    manifest = f"""\
apiVersion: management.project-flotta.io/v1alpha1
kind: EdgeWorkload
metadata:
  name: ssa-{unique}
spec:
  type: pod
  deviceSelector:
    matchLabels:
      site: "{unique}"
  pod:
    spec:
      containers:
      - name: app
        image: app:1
"""
    first = client.apply(manifest, server_side=True, field_manager="fleet-ci")
    assert [o.action for o in first] == ["serverside-applied"]

    # Another manager may not change fleet-ci's image: the outcome names the field
    # and its owner, and the stored image stays; force_conflicts takes it over.
    with pytest.raises(flotta.ApplyError) as caught:
        client.apply(manifest.replace("app:1", "app:2"), server_side=True, field_manager="hotfix")
    error = caught.value.outcomes[0].error
    assert isinstance(error, flotta.Conflict), error
    assert 'conflict with "fleet-ci"' in str(error) and ".spec.pod.spec.containers" in str(error)
    assert client.workloads.get(f"ssa-{unique}").spec.pod.spec.containers[0].image == "app:1"
    forced = client.apply(
        manifest.replace("app:1", "app:2"), server_side=True, field_manager="hotfix", force_conflicts=True
    )
    assert [o.action for o in forced] == ["serverside-applied"]
    assert client.workloads.get(f"ssa-{unique}").spec.pod.spec.containers[0].image == "app:2"


def test_edge_configs_are_validated_and_listed(client: flotta.Client, unique: str) -> None:
    """An EdgeConfig (docs/ansible.md): what the server cannot honour is refused
    naming the field; a valid one is stored and listed."""
    import base64

    playbook = "- hosts: 127.0.0.1\n  gather_facts: false\n  tasks:\n    - ping:\n"
    content = base64.b64encode(playbook.encode()).decode()
    body = {
        "apiVersion": "management.project-flotta.io/v1alpha1",
        "kind": "EdgeConfig",
        "metadata": {"name": f"ping-{unique}"},
        "spec": {"edgePlaybook": {"playbooks": [{"content": content, "timeoutSeconds": 30}]}},
    }
    two = {**body, "metadata": {"name": f"two-{unique}"}}
    two["spec"] = {"edgePlaybook": {"playbooks": [{"content": content}, {"content": content}]}}
    with pytest.raises(flotta.Invalid) as caught:
        client.edge_configs.create(two)
    assert "spec.edgePlaybook.playbooks" in str(caught.value)
    created = client.edge_configs.create(body)
    assert isinstance(created, flotta.EdgeConfig)
    listed = [c.name for c in client.edge_configs.list()]
    assert f"ping-{unique}" in listed
    assert client.playbook_executions.list(label_selector=f"management.project-flotta.io/edgeconfig=ping-{unique}") == []
    client.edge_configs.delete(f"ping-{unique}")
