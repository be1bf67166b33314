package dev.flotta

import dev.flotta.ffi.Agent
import dev.flotta.ffi.AgentEvent
import dev.flotta.ffi.AgentSettings
import dev.flotta.ffi.ApplyAction
import dev.flotta.ffi.EnvVar
import dev.flotta.ffi.FlottaException
import dev.flotta.ffi.ManagementClient
import dev.flotta.ffi.ResourceKind
import dev.flotta.ffi.RuntimeWorkload
import dev.flotta.ffi.Workload
import dev.flotta.ffi.WorkloadPhase
import dev.flotta.ffi.WorkloadRuntime
import dev.flotta.ffi.WorkloadRuntimeException
import kotlinx.coroutines.CompletableDeferred
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import kotlinx.coroutines.delay
import kotlinx.coroutines.flow.filterIsInstance
import kotlinx.coroutines.flow.first
import kotlinx.coroutines.flow.onStart
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.junit.jupiter.api.AfterAll
import org.junit.jupiter.api.BeforeAll
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestInstance
import java.nio.file.Files
import java.util.concurrent.ConcurrentHashMap
import kotlin.test.assertContains
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertTrue

/** A runtime that keeps workloads in a map, the way a vendor would start processes. */
class RecordingRuntime(
    private val refuse: Set<String> = emptySet(),
    private val crashOn: Set<String> = emptySet(),
) : WorkloadRuntime {
    val running = ConcurrentHashMap<String, Workload>()
    val applied = CompletableDeferred<Workload>()

    override suspend fun apply(workload: Workload) {
        if (workload.name in refuse) throw WorkloadRuntimeException.Failed("refused ${workload.name}")
        check(workload.name !in crashOn) { "disk full while starting ${workload.name}" }
        running[workload.name] = workload
        applied.complete(workload)
    }

    override suspend fun remove(name: String) {
        running.remove(name)
    }

    override suspend fun list(): List<RuntimeWorkload> =
        running.values.map { RuntimeWorkload(it.name, WorkloadPhase.RUNNING) }
}

@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class AgentTest {
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

    private fun settings(deviceId: String) = AgentSettings(
        server = server.edgeUrl,
        caPem = server.caPem,
        registrationCertificatePem = server.pki("register.crt"),
        registrationKeyPem = server.pki("register.key"),
        deviceId = deviceId,
        stateDir = Files.createTempDirectory("flotta-agent-").toString(),
        labels = mapOf("site" to "lab"),
        heartbeatPeriodMs = 500u,
        configWaitMs = 1_000u,
        retryInitialMs = 50u,
        retryMaxMs = 500u,
    )

    private fun workload(name: String, device: String, image: String) = """
        apiVersion: management.project-flotta.io/v1alpha1
        kind: EdgeWorkload
        metadata:
          name: $name
        spec:
          type: pod
          device: $device
          pod:
            spec:
              containers:
              - name: main
                image: $image
    """.trimIndent()

    @Test
    fun `an agent with a Kotlin runtime enrols, runs a workload and reports it`() = runBlocking {
        val runtime = RecordingRuntime()
        val agent = Agent(settings("kotlin-device-1"), runtime)
        assertEquals("kotlin-device-1", agent.deviceId())
        withTimeout(60_000) {
            val running = CompletableDeferred<Unit>()
            val phases = async {
                agent.eventFlow()
                    .onStart { running.complete(Unit) }
                    .filterIsInstance<AgentEvent.PhaseChanged>()
                    .first { it.phase == "Running" }
            }
            running.await()
            val job = launch(Dispatchers.Default) { agent.run() }
            phases.await()

            // Enrolled with auto-approval: the server knows the device.
            val device = eventually("the EdgeDevice") {
                runCatching { client.get(ResourceKind.EDGE_DEVICE, "default", "kotlin-device-1") }.getOrNull()
            }
            assertEquals("kotlin-device-1", device.name())

            // The workload reads a Secret: the runtime gets the resolved value.
            val secret = """
                apiVersion: v1
                kind: Secret
                metadata:
                  name: camera-token
                stringData:
                  token: t-1
            """.trimIndent() + "\n---\n"
            val withEnv = workload("camera", "kotlin-device-1", "quay.io/org/camera:1") + "\n" + """
                env:
                - name: TOKEN
                  valueFrom:
                    secretKeyRef:
                      name: camera-token
                      key: token
            """.trimIndent().prependIndent("        ") + "\n"
            val outcome = client.apply("default", secret + withEnv)
            assertEquals(listOf(ApplyAction.CREATED, ApplyAction.CREATED), outcome.map { it.action }, "outcome: $outcome")

            val applied = runtime.applied.await()
            assertEquals("camera", applied.name)
            assertContains(applied.specification, "quay.io/org/camera:1")
            assertEquals(listOf(EnvVar("TOKEN", "t-1")), applied.containers.single().env)

            // The heartbeat carries the runtime's report to the device status.
            val status = eventually("the workload in the device status") {
                client.get(ResourceKind.EDGE_DEVICE, "default", "kotlin-device-1").deviceStatus()
                    ?.takeIf { s -> s.workloads.any { it.name == "camera" && it.phase == "Running" } }
            }
            assertEquals(listOf("camera"), status.workloads.map { it.name })
            assertTrue(status.lastSeen != null, "the server stamped lastSeen")
            assertEquals("Running", agent.status().phase)
            assertTrue(agent.status().configVersion != null)

            agent.stop()
            job.join()
        }
        agent.close()
    }

    /** Runs an agent whose runtime fails `name`, applies it, returns the failure. */
    private suspend fun failedApply(deviceId: String, name: String, runtime: RecordingRuntime): AgentEvent.ApplyFailed {
        val agent = Agent(settings(deviceId), runtime)
        try {
            return withTimeout(60_000) {
                val subscribed = CompletableDeferred<Unit>()
                val failure = async {
                    agent.eventFlow()
                        .onStart { subscribed.complete(Unit) }
                        .filterIsInstance<AgentEvent.ApplyFailed>()
                        .first()
                }
                subscribed.await()
                val job = launch(Dispatchers.Default) { agent.run() }
                eventually("the EdgeDevice") {
                    runCatching { client.get(ResourceKind.EDGE_DEVICE, "default", deviceId) }.getOrNull()
                }
                client.apply("default", workload(name, deviceId, "quay.io/org/$name:1"))
                val event = failure.await()
                eventually("the failed version in the agent status") {
                    agent.status().failedVersion?.takeIf { it == event.version }
                }
                agent.stop()
                job.join()
                event
            }
        } finally {
            agent.close()
        }
    }

    @Test
    fun `a runtime failure is reported and rolled back`() = runBlocking {
        val runtime = RecordingRuntime(refuse = setOf("broken"))
        val event = failedApply("kotlin-device-2", "broken", runtime)
        assertContains(event.reason, "refused broken")
        assertTrue(runtime.running.isEmpty())
    }

    @Test
    fun `an unexpected exception in the runtime is a failed apply, not a crash`() = runBlocking {
        val runtime = RecordingRuntime(crashOn = setOf("crashing"))
        val event = failedApply("kotlin-device-4", "crashing", runtime)
        assertContains(event.reason, "disk full while starting crashing")
        assertTrue(runtime.running.isEmpty())
    }

    @Test
    fun `bad settings are refused before anything runs`() {
        val error = assertFailsWith<FlottaException.InvalidConfig> {
            Agent(settings("no/slashes"), RecordingRuntime())
        }
        assertContains(error.message ?: "", "device_id")
        assertFailsWith<FlottaException.InvalidConfig> {
            Agent(settings("kotlin-device-3").copy(registrationKeyPem = "not a key"), RecordingRuntime())
        }
    }

    private suspend fun <T : Any> eventually(what: String, check: suspend () -> T?): T {
        repeat(300) {
            check()?.let { return it }
            delay(100)
        }
        error("timed out waiting for $what")
    }
}
