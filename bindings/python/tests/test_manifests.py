from __future__ import annotations

import json
import pickle

import pytest

import flotta

FLEET = """\
apiVersion: management.project-flotta.io/v1alpha1
kind: EdgeDeviceSet
metadata:
  name: lab
  labels:
    site: lab
spec:
  selector:
    matchLabels:
      site: lab
  heartbeat:
    periodSeconds: 30
---
apiVersion: management.project-flotta.io/v1alpha1
kind: EdgeWorkload
metadata:
  name: web
  namespace: shop
spec:
  type: pod
  deviceSelector:
    matchLabels:
      site: lab
  pod:
    spec:
      containers:
      - name: web
        image: quay.io/org/web:1
---
apiVersion: management.project-flotta.io/v1alpha1
kind: EdgeDeviceSignedRequest
metadata:
  name: edge-09
spec:
  targetNamespace: default
  approved: false
"""


def test_load_manifests_gives_typed_resources_with_attribute_access() -> None:
    device_set, web, request = flotta.load_manifests(FLEET)
    assert isinstance(device_set, flotta.EdgeDeviceSet)
    assert isinstance(web, flotta.EdgeWorkload)
    assert isinstance(request, flotta.EdgeDeviceSignedRequest)
    assert device_set.kind == "EdgeDeviceSet"
    assert device_set.name == "lab"
    assert device_set.labels == {"site": "lab"}
    assert device_set.spec.heartbeat.periodSeconds == 30
    assert device_set.spec.heartbeat.period_seconds == 30
    assert web.namespace == "shop"
    assert web.spec.device_selector.match_labels == {"site": "lab"}
    assert web.spec.pod.spec.containers[0].image == "quay.io/org/web:1"
    assert web["spec"]["type"] == "pod"
    assert request.spec.approved is False
    with pytest.raises(AttributeError):
        _ = web.spec.no_such_field


def test_nested_views_are_live() -> None:
    (device_set, *_) = flotta.load_manifests(FLEET)
    device_set.metadata.labels["tier"] = "edge"
    device_set.spec.heartbeat.period_seconds = 45
    data = device_set.to_dict()
    assert data["metadata"]["labels"] == {"site": "lab", "tier": "edge"}
    assert data["spec"]["heartbeat"]["periodSeconds"] == 45
    # to_dict is a copy
    data["metadata"]["name"] = "other"
    assert device_set.name == "lab"


def test_round_trip_through_yaml_and_json() -> None:
    resources = flotta.load_manifests(FLEET)
    again = flotta.load_manifests(flotta.dump_manifests(resources))
    assert again == resources
    web = resources[1]
    assert flotta.load_manifests(web.to_yaml()) == [web]
    assert json.loads(web.to_json()) == web.to_dict()
    assert flotta.load_manifests(web.to_json(indent=2)) == [web]
    assert flotta.Resource.from_dict(web.to_dict()) == web


def test_json_manifests_and_unknown_fields_are_kept() -> None:
    text = json.dumps(
        [
            {
                "apiVersion": flotta.API_VERSION,
                "kind": "EdgeDevice",
                "metadata": {"name": "cam-1"},
                "spec": {"requestTime": "2024-01-01T00:00:00Z", "vendorField": {"x": 1}},
            }
        ]
    )
    (device,) = flotta.load_manifests(text)
    assert isinstance(device, flotta.EdgeDevice)
    assert device.spec.vendorField == {"x": 1}


def test_constructors_build_valid_resources() -> None:
    workload = flotta.EdgeWorkload(
        "api",
        namespace="shop",
        labels={"app": "api"},
        spec={
            "type": "pod",
            "deviceSelector": {"matchLabels": {"site": "lab"}},
            "pod": {"spec": {"containers": [{"name": "api", "image": "api:1"}]}},
        },
    )
    workload.validate()
    assert workload.to_dict()["apiVersion"] == flotta.API_VERSION
    assert workload.to_dict()["kind"] == "EdgeWorkload"
    assert repr(workload) == "EdgeWorkload(name='api', namespace='shop')"


def test_validation_reports_every_problem_with_its_path() -> None:
    workload = flotta.EdgeWorkload(
        "Bad_Name",
        labels={"ok": "yes", "bad key!": "v"},
        spec={
            "type": "pod",
            "deviceSelector": {"matchLabels": {"site": "lab"}},
            "pod": {
                "spec": {
                    "containers": [
                        {"name": "a", "image": "x", "livenessProbe": {"exec": {"command": ["true"]}}},
                        {"name": "a", "image": "y"},
                    ]
                }
            },
        },
    )
    with pytest.raises(flotta.ValidationError) as caught:
        workload.validate()
    error = caught.value
    assert isinstance(error, ValueError)
    paths = [path for path, _ in error.errors]
    assert "metadata.name" in paths
    assert any(path.startswith("metadata.labels") for path in paths)
    assert any("livenessProbe" in path for path in paths)
    assert any("containers[1].name" in path for path in paths)
    assert all(message for _, message in error.errors)
    assert error.errors == workload.validation_errors()
    assert "metadata.name" in str(error)


def test_heartbeat_range_is_checked() -> None:
    device_set = flotta.EdgeDeviceSet("lab", spec={"selector": {"matchLabels": {"a": "b"}}, "heartbeat": {"periodSeconds": 0}})
    errors = dict(device_set.validation_errors())
    assert "spec.heartbeat.periodSeconds" in errors
    assert "at least 1" in errors["spec.heartbeat.periodSeconds"]


def test_manifest_errors_name_the_document_and_field() -> None:
    broken = FLEET + "---\napiVersion: management.project-flotta.io/v1alpha1\nkind: EdgeDeviceSet\nmetadata: {name: x}\nspec:\n  heartbeat:\n    periodSeconds: soon\n"
    with pytest.raises(flotta.ManifestError) as caught:
        flotta.load_manifests(broken)
    assert caught.value.document == 3
    ((path, message),) = caught.value.errors
    assert path == "spec.heartbeat.periodSeconds"
    assert message
    assert isinstance(caught.value, flotta.ValidationError)


def test_unknown_kind_and_bad_yaml() -> None:
    with pytest.raises(flotta.ManifestError) as caught:
        flotta.load_manifests("kind: Gizmo\nmetadata: {name: g}\n")
    assert caught.value.errors[0][0] == "kind"
    assert "Gizmo" in str(caught.value)
    with pytest.raises(flotta.ManifestError) as caught:
        flotta.load_manifests("a: [\n")
    assert caught.value.document == 0
    with pytest.raises(flotta.ManifestError):
        flotta.EdgeWorkload("x", spec={"type": 5})


def test_from_dict_on_a_subclass_checks_the_kind() -> None:
    (device_set, *_) = flotta.load_manifests(FLEET)
    with pytest.raises(TypeError):
        flotta.EdgeWorkload.from_dict(device_set.to_dict())
    assert flotta.EdgeDeviceSet.from_dict(device_set.to_dict()) == device_set


def test_errors_pickle() -> None:
    error = flotta.ValidationError("bad", [("a", "b")])
    again = pickle.loads(pickle.dumps(error))
    assert again.errors == [("a", "b")]
    not_found = flotta.NotFound("gone", status=404, reason="NotFound")
    assert pickle.loads(pickle.dumps(not_found)).status == 404


def test_resource_classes_take_their_names_from_the_kind_table() -> None:
    from flotta import _flotta

    table = _flotta.kinds()
    assert [row["kind"] for row in table] == [
        "EdgeDevice",
        "EdgeDeviceSet",
        "EdgeWorkload",
        "EdgeDeviceSignedRequest",
        "EdgeConfig",
        "PlaybookExecution",
        "Repository",
        "ResourceSync",
        "Secret",
        "ConfigMap",
        "Event",
        "Role",
        "RoleBinding",
        "ClusterRole",
        "ClusterRoleBinding",
    ]
    classes = (
        flotta.EdgeDevice,
        flotta.EdgeDeviceSet,
        flotta.EdgeWorkload,
        flotta.EdgeDeviceSignedRequest,
        flotta.EdgeConfig,
        flotta.PlaybookExecution,
        flotta.Repository,
        flotta.ResourceSync,
        flotta.Secret,
        flotta.ConfigMap,
        flotta.Event,
    )
    for cls in classes:
        row = next(row for row in table if row["kind"] == cls.kind)
        assert cls.plural == row["plural"]
        assert cls.singular == row["singular"]
        assert cls.short_names == tuple(row["short_names"])
    assert flotta.EdgeDeviceSignedRequest.plural == "edgedevicesignedrequests"
    assert flotta.EdgeDeviceSignedRequest.short_names == ("edsr",)
    assert flotta.EdgeWorkload.short_names == ("ew",)
    assert table[3]["crd_plural"] == "edgedevicesignedrequest"
    assert table[0]["api_version"] == "management.project-flotta.io/v1alpha1"
    assert table[8]["api_version"] == "v1"  # Secret, after the eight flotta kinds
    assert flotta.Repository.plural == "repositories"
    assert flotta.Repository.short_names == ("repo",)
    assert flotta.ResourceSync.plural == "resourcesyncs"
    assert flotta.ConfigMap.short_names == ("cm",)
    assert flotta.Event.plural == "events"
