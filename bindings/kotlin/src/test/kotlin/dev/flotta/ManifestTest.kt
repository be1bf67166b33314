package dev.flotta

import dev.flotta.ffi.FlottaException
import dev.flotta.ffi.Resource
import dev.flotta.ffi.ResourceKind
import dev.flotta.ffi.manifestsToYaml
import dev.flotta.ffi.parseManifests
import dev.flotta.ffi.resourceKindNamed
import dev.flotta.ffi.resourceKinds
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows
import kotlin.test.assertContains
import kotlin.test.assertEquals
import kotlin.test.assertNull
import kotlin.test.assertTrue

const val FLEET = """
apiVersion: management.project-flotta.io/v1alpha1
kind: EdgeDeviceSet
metadata:
  name: cameras
  namespace: lab
  labels:
    site: lab
spec:
  selector:
    matchLabels:
      device-class: camera
---
apiVersion: management.project-flotta.io/v1alpha1
kind: EdgeWorkload
metadata:
  name: grabber
  namespace: lab
  labels:
    app: grabber
spec:
  type: pod
  deviceSelector:
    matchLabels:
      device-class: camera
  pod:
    spec:
      containers:
      - name: grabber
        image: registry.example.com/grabber:1.0
"""

class ManifestTest {
    @Test
    fun `a multi-document manifest reads into typed resources`() {
        val resources = parseManifests(FLEET)
        assertEquals(listOf(ResourceKind.EDGE_DEVICE_SET, ResourceKind.EDGE_WORKLOAD), resources.map { it.kind() })
        assertEquals(listOf("cameras", "grabber"), resources.map { it.name() })
        assertEquals("lab", resources[1].namespace())
        assertEquals(mapOf("app" to "grabber"), resources[1].labels())
        assertTrue(resources.all { it.validate().isEmpty() }, "the fleet is valid")
        assertNull(resources[0].deviceStatus())
    }

    @Test
    fun `YAML output reads back to the same resources`() {
        val resources = parseManifests(FLEET)
        val yaml = manifestsToYaml(resources)
        assertTrue(yaml.startsWith("---\n"))
        val again = parseManifests(yaml)
        assertEquals(resources.map { it.toJson() }, again.map { it.toJson() })
        assertContains(again[1].toYaml(), "image: registry.example.com/grabber:1.0")
    }

    @Test
    fun `validation reports every problem with its field path`() {
        val workload = Resource.parse(
            """
            apiVersion: management.project-flotta.io/v1alpha1
            kind: EdgeWorkload
            metadata:
              name: Bad_Name
            spec:
              type: vm
              pod:
                spec:
                  containers:
                  - name: web
                    image: web:1
                    ports:
                    - containerPort: 9100
                      hostPort: 9100
            """.trimIndent(),
        )
        val problems = workload.validate().associate { it.path to it.message }
        assertTrue("metadata.name" in problems, "problems: $problems")
        assertTrue("spec.type" in problems, "problems: $problems")
        assertTrue(problems.keys.any { it.startsWith("spec.pod.spec.containers[0].ports[0]") }, "problems: $problems")
    }

    @Test
    fun `reading errors name the document and the field`() {
        val wrongType = assertThrows<FlottaException.InvalidManifest> {
            parseManifests(FLEET + "---\nkind: EdgeDevice\nmetadata:\n  name: d\nspec:\n  heartbeat:\n    periodSeconds: soon\n")
        }
        assertEquals("InvalidManifest", wrongType.kind)
        assertContains(wrongType.message ?: "", "document 2")
        assertContains(wrongType.message ?: "", "spec.heartbeat.periodSeconds")
        val unknownKind = assertThrows<FlottaException.InvalidManifest> { parseManifests("kind: Pod\n") }
        assertContains(unknownKind.message ?: "", "Pod")
        assertThrows<FlottaException.InvalidManifest> { Resource.parse(FLEET) }
    }

    @Test
    fun `a device's reported status is readable`() {
        val device = Resource.parse(
            """
            apiVersion: management.project-flotta.io/v1alpha1
            kind: EdgeDevice
            metadata:
              name: cam-1
            spec:
              requestTime: "2026-03-02T09:15:00Z"
            status:
              phase: up
              lastSeen: "2026-03-02T10:00:00Z"
              workloads:
              - name: grabber
                phase: Running
            """.trimIndent(),
        )
        val status = device.deviceStatus() ?: error("no status")
        assertEquals("up", status.phase)
        assertEquals("2026-03-02T10:00:00Z", status.lastSeen)
        assertEquals(listOf("grabber" to "Running"), status.workloads.map { it.name to it.phase })
    }
}

class ResourceKindTest {
    @Test
    fun `the kind table gives every kind its names`() {
        val kinds = resourceKinds()
        assertEquals(ResourceKind.values().toList(), kinds.map { it.kind })
        val requests = kinds.single { it.kind == ResourceKind.EDGE_DEVICE_SIGNED_REQUEST }
        assertEquals("EdgeDeviceSignedRequest", requests.name)
        assertEquals(listOf("edsr"), requests.shortNames)
        assertEquals("edgedevicesignedrequest", requests.crdPlural)
        assertEquals("management.project-flotta.io/v1alpha1", requests.apiVersion)
        assertEquals(ResourceKind.EDGE_WORKLOAD, resourceKindNamed("EW"))
        assertEquals(ResourceKind.EDGE_DEVICE, resourceKindNamed("devices"))
        assertNull(resourceKindNamed("pods"))
    }
}
