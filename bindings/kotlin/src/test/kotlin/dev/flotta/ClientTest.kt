package dev.flotta

import dev.flotta.ffi.ApplyAction
import dev.flotta.ffi.FlottaException
import dev.flotta.ffi.ManagementClient
import dev.flotta.ffi.ResourceKind
import dev.flotta.ffi.WatchEventType
import kotlinx.coroutines.CompletableDeferred
import kotlinx.coroutines.async
import kotlinx.coroutines.flow.filter
import kotlinx.coroutines.flow.first
import kotlinx.coroutines.flow.onEach
import kotlinx.coroutines.flow.take
import kotlinx.coroutines.flow.toList
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.junit.jupiter.api.AfterAll
import org.junit.jupiter.api.BeforeAll
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestInstance
import kotlin.test.assertContains
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertNotNull
import kotlin.test.assertNull
import kotlin.test.assertTrue

@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class ClientTest {
    private lateinit var server: FlottaServer
    private lateinit var client: ManagementClient

    @BeforeAll
    fun start() {
        server = FlottaServer.start()
        client = ManagementClient(server.apiUrl, server.token, server.caPem)
    }

    @AfterAll
    fun stop() {
        client.close()
        server.close()
    }

    @Test
    fun `apply creates, then leaves unchanged, then configures`() = runBlocking {
        val first = client.apply("lab", FLEET.replace("name: grabber", "name: apply-grabber").replace("name: cameras", "name: apply-cameras"))
        assertEquals(listOf(ApplyAction.CREATED, ApplyAction.CREATED), first.map { it.action }, "outcomes: $first")
        assertEquals(listOf("apply-cameras", "apply-grabber"), first.map { it.name })
        val again = client.apply("lab", FLEET.replace("name: grabber", "name: apply-grabber").replace("name: cameras", "name: apply-cameras"))
        assertEquals(listOf(ApplyAction.UNCHANGED, ApplyAction.UNCHANGED), again.map { it.action })
        val changed = client.apply(
            "lab",
            FLEET.replace("name: grabber", "name: apply-grabber").replace("name: cameras", "name: apply-cameras")
                .replace("grabber:1.0", "grabber:2.0"),
        )
        assertEquals(listOf(ApplyAction.UNCHANGED, ApplyAction.CONFIGURED), changed.map { it.action })
        val workload = client.get(ResourceKind.EDGE_WORKLOAD, "lab", "apply-grabber")
        assertContains(workload.toYaml(), "grabber:2.0")
        assertNotNull(workload.resourceVersion())
    }

    @Test
    fun `server-side apply owns fields and names another manager's conflicts`() = runBlocking {
        val fleet = FLEET.replace("name: grabber", "name: ssa-grabber").replace("name: cameras", "name: ssa-cameras")
        val first = client.serverSideApply("lab", fleet, "firmware-ci", false)
        assertEquals(listOf(ApplyAction.SERVER_SIDE_APPLIED, ApplyAction.SERVER_SIDE_APPLIED), first.map { it.action }, "outcomes: $first")
        val changed = fleet.replace("grabber:1.0", "grabber:2.0")
        val refused = client.serverSideApply("lab", changed, "vendor-tool", false)
        assertNull(refused[1].action, "outcomes: $refused")
        val error = assertNotNull(refused[1].error)
        assertContains(error, "conflict with \"firmware-ci\"")
        assertContains(client.get(ResourceKind.EDGE_WORKLOAD, "lab", "ssa-grabber").toYaml(), "grabber:1.0")
        val forced = client.serverSideApply("lab", changed, "vendor-tool", true)
        assertTrue(forced.all { it.action == ApplyAction.SERVER_SIDE_APPLIED }, "outcomes: $forced")
        assertContains(client.get(ResourceKind.EDGE_WORKLOAD, "lab", "ssa-grabber").toYaml(), "grabber:2.0")
    }

    @Test
    fun `deny and approve say so in the request's spec and status`() = runBlocking {
        client.apply(
            "default",
            """
            apiVersion: management.project-flotta.io/v1alpha1
            kind: EdgeDeviceSignedRequest
            metadata:
              name: kotlin-denied
            spec:
              targetNamespace: default
            """.trimIndent(),
        )
        val denied = client.deny("default", "kotlin-denied").toYaml()
        assertContains(denied, "approved: false")
        assertContains(denied, "type: declined")
        val approved = client.approve("default", "kotlin-denied").toYaml()
        assertContains(approved, "approved: true")
        assertContains(approved, "type: approved")
        assertTrue("declined" !in approved, approved)
    }

    @Test
    fun `enrolment decisions are events, listed and watched`() = runBlocking {
        client.apply(
            "default",
            """
            apiVersion: management.project-flotta.io/v1alpha1
            kind: EdgeDeviceSignedRequest
            metadata:
              name: kotlin-events
            spec:
              targetNamespace: default
            """.trimIndent(),
        )
        val about = "involvedObject.kind=EdgeDeviceSignedRequest,involvedObject.name=kotlin-events"
        withTimeout(30_000) {
            val connected = CompletableDeferred<Unit>()
            val seen = async {
                client.watchFlow(ResourceKind.EVENT, namespace = "default", fieldSelector = about)
                    .onEach { connected.complete(Unit) }
                    .first { event -> event.events.any { it.reason == "EnrolmentApproved" } }
            }
            client.deny("default", "kotlin-events")
            // The denial's event opens the watch's stream; the approval follows it.
            connected.await()
            client.approve("default", "kotlin-events")
            val approved = seen.await().events.single { it.reason == "EnrolmentApproved" }
            assertEquals("EdgeDeviceSignedRequest", approved.involvedKind)
            assertEquals("Normal", approved.eventType)
            assertEquals("flotta-server", approved.source)
        }
        val listed = client.eventsFor("default", ResourceKind.EDGE_DEVICE_SIGNED_REQUEST, "kotlin-events")
        // Both happened within the same second: their order is not defined.
        assertEquals(listOf("EnrolmentApproved", "EnrolmentDenied"), listed.map { it.reason }.sorted(), "events: $listed")
        assertEquals("Warning", listed.single { it.reason == "EnrolmentDenied" }.eventType)
        val warnings = client.listEvents("default", "$about,type=Warning")
        assertEquals(listOf("EnrolmentDenied"), warnings.map { it.reason })
        assertFailsWith<FlottaException.InvalidConfig> { client.list(ResourceKind.EVENT, "default", null, null) }
        assertFailsWith<FlottaException> { client.listEvents("default", "involvedObject.colour=red") }
        Unit
    }

    @Test
    fun `a bad document fails alone`() = runBlocking {
        val outcomes = client.apply("lab", "kind: Pod\nmetadata:\n  name: p\n---\n" + FLEET.replace("name: cameras", "name: lone-cameras").substringBefore("---"))
        assertEquals(2, outcomes.size, "outcomes: $outcomes")
        assertNull(outcomes[0].action)
        assertContains(outcomes[0].error ?: "", "Pod")
        assertEquals(ApplyAction.CREATED, outcomes[1].action)
    }

    @Test
    fun `list filters by label and field selectors`() = runBlocking {
        val manifest = (1..3).joinToString("---\n") { i ->
            """
            apiVersion: management.project-flotta.io/v1alpha1
            kind: EdgeDeviceSet
            metadata:
              name: set-$i
              labels:
                tier: "${if (i == 1) "gold" else "silver"}"
            spec: {}
            """.trimIndent() + "\n"
        }
        assertTrue(client.apply("listing", manifest).all { it.action == ApplyAction.CREATED })
        val all = client.list(ResourceKind.EDGE_DEVICE_SET, "listing", null, null)
        assertEquals(listOf("set-1", "set-2", "set-3"), all.map { it.name() }.sortedBy { it })
        val silver = client.list(ResourceKind.EDGE_DEVICE_SET, "listing", "tier=silver", null)
        assertEquals(listOf("set-2", "set-3"), silver.map { it.name() }.sortedBy { it })
        val named = client.list(ResourceKind.EDGE_DEVICE_SET, null, null, "metadata.name=set-3")
        assertEquals(listOf("set-3"), named.map { it.name() })
        assertFailsWith<FlottaException> { client.list(ResourceKind.EDGE_DEVICE_SET, "listing", "tier in (", null) }
        Unit
    }

    @Test
    fun `secrets and config maps are applied and listed`() = runBlocking {
        val manifest = """
            apiVersion: v1
            kind: Secret
            metadata:
              name: api
              labels:
                app: reader
            stringData:
              token: t-1
            ---
            apiVersion: v1
            kind: ConfigMap
            metadata:
              name: settings
            data:
              MODE: fast
        """.trimIndent() + "\n"
        val outcomes = client.apply("secrets", manifest)
        assertEquals(listOf(ApplyAction.CREATED, ApplyAction.CREATED), outcomes.map { it.action }, "outcomes: $outcomes")
        val secrets = client.list(ResourceKind.SECRET, "secrets", "app=reader", null)
        assertEquals(listOf("api"), secrets.map { it.name() })
        assertEquals(ResourceKind.SECRET, secrets.single().kind())
        val maps = client.list(ResourceKind.CONFIG_MAP, "secrets", null, "metadata.name=settings")
        assertEquals(listOf("settings"), maps.map { it.name() })
    }

    @Test
    fun `edge configs are applied and listed, and one the server cannot honour is refused by field`() = runBlocking {
        // The playbook "- hosts: 127.0.0.1\n  tasks:\n    - ping:\n", base64-encoded.
        val content = java.util.Base64.getEncoder()
            .encodeToString("- hosts: 127.0.0.1\n  tasks:\n    - ping:\n".toByteArray())
        val manifest = """
            apiVersion: management.project-flotta.io/v1alpha1
            kind: EdgeConfig
            metadata:
              name: ping
            spec:
              edgePlaybook:
                playbooks:
                  - content: $content
                    timeoutSeconds: 30
            ---
            apiVersion: management.project-flotta.io/v1alpha1
            kind: EdgeConfig
            metadata:
              name: ping-as-root
            spec:
              edgePlaybook:
                user: root
                playbooks:
                  - content: $content
        """.trimIndent() + "\n"
        val outcomes = client.apply("ansible", manifest)
        assertEquals(2, outcomes.size, "outcomes: $outcomes")
        assertEquals(ApplyAction.CREATED, outcomes[0].action)
        assertNull(outcomes[1].action)
        assertContains(outcomes[1].error ?: "", "spec.edgePlaybook.user")
        val configs = client.list(ResourceKind.EDGE_CONFIG, "ansible", null, null)
        assertEquals(listOf("ping"), configs.map { it.name() })
        assertEquals(ResourceKind.EDGE_CONFIG, configs.single().kind())
        assertEquals(emptyList(), client.list(ResourceKind.PLAYBOOK_EXECUTION, "ansible", null, null))
    }

    @Test
    fun `errors carry the kind`() = runBlocking {
        val missing = assertFailsWith<FlottaException.NotFound> {
            client.get(ResourceKind.EDGE_DEVICE, "lab", "no-such-device")
        }
        assertEquals("NotFound", missing.kind)
        assertContains(missing.message ?: "", "404")
        val stranger = ManagementClient(server.apiUrl, "flt_not-a-token", server.caPem)
        val denied = assertFailsWith<FlottaException.Unauthorized> {
            stranger.list(ResourceKind.EDGE_DEVICE, null, null, null)
        }
        assertContains(denied.message ?: "", "401")
        // A CA that did not sign the server's certificate: the TLS handshake fails.
        val untrusted = ManagementClient(server.apiUrl, server.token, server.pki("register.crt"))
        assertFailsWith<FlottaException.Unreachable> { untrusted.list(ResourceKind.EDGE_DEVICE, null, null, null) }
        assertFailsWith<FlottaException.InvalidConfig> { ManagementClient(server.apiUrl, server.token, "not a PEM") }
        Unit
    }

    @Test
    fun `the client reads the server's admin configuration`() = runBlocking {
        val fromFile = ManagementClient.fromConfigFile(server.adminYaml.toString())
        assertEquals(server.apiUrl.trimEnd('/'), fromFile.server().trimEnd('/'))
        fromFile.list(ResourceKind.EDGE_WORKLOAD, null, null, null)
        Unit
    }

    private fun watchedSet(name: String) =
        FLEET.substringBefore("---").replace("name: cameras", "name: $name").replace("namespace: lab", "namespace: watched")

    @Test
    fun `watch is a Flow of changes`() = runBlocking {
        client.apply("watched", watchedSet("before"))
        withTimeout(30_000) {
            val connected = CompletableDeferred<Unit>()
            val seen = async {
                client.watchFlow(ResourceKind.EDGE_DEVICE_SET, namespace = "watched")
                    .onEach { connected.complete(Unit) }
                    // The server writes a set's status (its device counts) soon after
                    // the set is created; those MODIFIED events are not this test's.
                    .filter { it.eventType != WatchEventType.MODIFIED }
                    .take(3)
                    .toList()
            }
            // The first event is the existing object: the watch is on from then on.
            connected.await()
            client.apply("watched", watchedSet("after"))
            client.delete(ResourceKind.EDGE_DEVICE_SET, "watched", "before")
            val events = seen.await()
            assertEquals(
                listOf(
                    WatchEventType.ADDED to "before",
                    WatchEventType.ADDED to "after",
                    WatchEventType.DELETED to "before",
                ),
                events.map { it.eventType to it.objects.single().name() },
            )
        }
    }

    @Test
    fun `a watch with a bad selector throws from the flow`() = runBlocking {
        val error = assertFailsWith<FlottaException> {
            withTimeout(30_000) {
                client.watchFlow(ResourceKind.EDGE_DEVICE, labelSelector = "a in (").first()
            }
        }
        assertContains(error.message ?: "", "400")
    }
}
