package dev.flotta

import dev.flotta.ffi.ApplyAction
import dev.flotta.ffi.FlottaException
import dev.flotta.ffi.ManagementClient
import dev.flotta.ffi.ResourceKind
import dev.flotta.ffi.WatchEventType
import kotlinx.coroutines.CompletableDeferred
import kotlinx.coroutines.async
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
