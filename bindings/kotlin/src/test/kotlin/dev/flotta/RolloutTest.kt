package dev.flotta

import dev.flotta.ffi.Agent
import dev.flotta.ffi.AgentSettings
import dev.flotta.ffi.ApplyAction
import dev.flotta.ffi.FlottaException
import dev.flotta.ffi.ManagementClient
import dev.flotta.ffi.ResourceKind
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.Job
import kotlinx.coroutines.delay
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.junit.jupiter.api.AfterAll
import org.junit.jupiter.api.BeforeAll
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestInstance
import java.nio.file.Files
import kotlin.test.assertContains
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertNotEquals
import kotlin.test.assertNotNull

/**
 * An enforced rollout driven from Kotlin: two Kotlin agents, a workload whose
 * policy has two batches and asks for manual approval, and the rollout controls
 * (status, pause, resume, approve) of the Kotlin management client. What the
 * devices run is read from their runtimes and from the revisions they report.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class RolloutTest {
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

    private fun settings(deviceId: String, fleet: String = "kotlin-rollout") = AgentSettings(
        server = server.edgeUrl,
        caPem = server.caPem,
        registrationCertificatePem = server.pki("register.crt"),
        registrationKeyPem = server.pki("register.key"),
        deviceId = deviceId,
        stateDir = Files.createTempDirectory("flotta-agent-").toString(),
        labels = mapOf("fleet" to fleet),
        heartbeatPeriodMs = 500u,
        configWaitMs = 1_000u,
        retryInitialMs = 50u,
        retryMaxMs = 500u,
    )

    private fun workload(image: String) = """
        apiVersion: management.project-flotta.io/v1alpha1
        kind: EdgeWorkload
        metadata:
          name: $WORKLOAD
        spec:
          type: pod
          deviceSelector:
            matchLabels:
              fleet: kotlin-rollout
          rolloutPolicy:
            batches:
            - limit: 1
            manualApproval: true
          pod:
            spec:
              containers:
              - name: main
                image: $image
    """.trimIndent()

    /** The rollout record as the Kotlin client returns it (compact JSON). */
    private suspend fun record(): String? = client.rolloutStatus("default", WORKLOAD)

    /** The image device [index]'s runtime runs for the workload ("" when none). */
    private fun image(runtimes: List<RecordingRuntime>, index: Int): String =
        runtimes[index].running[WORKLOAD]?.specification ?: ""

    /** The revision device [name] reported running the workload at, per the server. */
    private suspend fun reportedRevision(name: String): String? =
        client.get(ResourceKind.EDGE_DEVICE, "default", name).deviceStatus()
            ?.workloads?.firstOrNull { it.name == WORKLOAD && it.phase == "Running" }?.revision

    @Test
    fun `a two-batch rollout waits for approval from Kotlin, pauses and resumes`() = runBlocking {
        // Batch 0 is the first device by name, batch 1 the second.
        val devices = listOf("kotlin-ro-a", "kotlin-ro-b")
        val runtimes = devices.map { RecordingRuntime() }
        val agents = devices.zip(runtimes).map { (device, runtime) -> Agent(settings(device), runtime) }
        val jobs: List<Job> = agents.map { agent -> launch(Dispatchers.Default) { agent.run() } }
        try {
            withTimeout(120_000) {
                for (device in devices) {
                    eventually("EdgeDevice $device") {
                        runCatching { client.get(ResourceKind.EDGE_DEVICE, "default", device) }.getOrNull()
                    }
                }

                // The first revision goes to both devices at once.
                val created = client.apply("default", workload("registry.local/ro:1"))
                assertEquals(listOf(ApplyAction.CREATED), created.map { it.action }, "outcome: $created")
                eventually("revision 1 on both devices") {
                    devices.indices.all { image(runtimes, it).contains("ro:1") }.takeIf { it }
                }
                val first = eventually("the first revision complete") {
                    record()?.takeIf { it.bool("complete") == true }
                }
                val revision1 = assertNotNull(first.string("currentRevision"))
                for (device in devices) {
                    eventually("$device reporting revision 1") { reportedRevision(device)?.takeIf { it == revision1 } }
                }

                // The change: batch 0 gets it, batch 1 waits for an operator.
                val changed = client.apply("default", workload("registry.local/ro:2"))
                assertEquals(listOf(ApplyAction.CONFIGURED), changed.map { it.action }, "outcome: $changed")
                val waiting = eventually("batch 1 awaiting approval") {
                    record()?.takeIf { it.string("reason") == "AwaitingApproval" }
                }
                val revision2 = assertNotNull(waiting.string("currentRevision"))
                assertNotEquals(revision1, revision2)
                assertEquals(revision1, waiting.string("previousRevision"))
                assertEquals(1, waiting.int("releasedBatches"))
                assertContains(image(runtimes, 0), "ro:2")
                assertContains(image(runtimes, 1), "ro:1", message = "batch 1 keeps the old revision until approved")
                assertEquals(revision2, eventually("batch 0 reporting revision 2") {
                    reportedRevision(devices[0])?.takeIf { it == revision2 }
                })
                assertEquals(revision1, reportedRevision(devices[1]))

                // Paused by the operator, then resumed: back to waiting for approval.
                client.pauseRollout("default", WORKLOAD)
                val paused = eventually("the rollout paused") {
                    record()?.takeIf { it.string("reason") == "PausedByOperator" }
                }
                assertEquals(true, paused.bool("paused"))
                assertEquals(1, paused.int("releasedBatches"))
                assertContains(image(runtimes, 1), "ro:1", message = "a paused rollout releases nothing")
                client.resumeRollout("default", WORKLOAD)
                eventually("awaiting approval again after resume") {
                    record()?.takeIf { it.string("reason") == "AwaitingApproval" }
                }

                // Approved from Kotlin: batch 1 is released and the rollout completes.
                client.approveRollout("default", WORKLOAD)
                eventually("revision 2 on both devices") {
                    devices.indices.all { image(runtimes, it).contains("ro:2") }.takeIf { it }
                }
                eventually("batch 1 reporting revision 2") {
                    reportedRevision(devices[1])?.takeIf { it == revision2 }
                }
                val complete = eventually("the rollout complete") {
                    record()?.takeIf { it.bool("complete") == true }
                }
                assertEquals(revision2, complete.string("currentRevision"))
                assertEquals(2, complete.int("releasedBatches"))
                val error = assertFailsWith<FlottaException.Rollout> { client.approveRollout("default", WORKLOAD) }
                assertContains(error.message ?: "", "nothing to approve")
            }
        } finally {
            agents.forEach { it.stop() }
            jobs.forEach { it.join() }
            agents.forEach { it.close() }
        }
    }

    private fun deviceSet(includeHardware: Boolean) = """
        apiVersion: management.project-flotta.io/v1alpha1
        kind: EdgeDeviceSet
        metadata:
          name: $SET
        spec:
          selector:
            matchLabels:
              fleet: kotlin-set-rollout
          rolloutPolicy:
            batches:
            - limit: 1
            manualApproval: true
          heartbeat:
            periodSeconds: 1
            hardwareProfile:
              include: $includeHardware
    """.trimIndent()

    @Test
    fun `a device set's rollout waits for approval from Kotlin and undo goes back`() = runBlocking {
        val devices = listOf("kotlin-set-a", "kotlin-set-b")
        val agents = devices.map { Agent(settings(it, fleet = "kotlin-set-rollout"), RecordingRuntime()) }
        val jobs: List<Job> = agents.map { agent -> launch(Dispatchers.Default) { agent.run() } }
        suspend fun setRecord(): String? = client.deviceSetRolloutStatus("default", SET)
        try {
            withTimeout(120_000) {
                for (device in devices) {
                    eventually("EdgeDevice $device") {
                        runCatching { client.get(ResourceKind.EDGE_DEVICE, "default", device) }.getOrNull()
                    }
                }
                client.apply("default", deviceSet(false))
                val first = eventually("the set's first revision complete") {
                    setRecord()?.takeIf { it.bool("complete") == true }
                }
                val revision1 = assertNotNull(first.string("currentRevision"))

                client.apply("default", deviceSet(true))
                val waiting = eventually("the set's batch 1 awaiting approval") {
                    setRecord()?.takeIf { it.string("reason") == "AwaitingApproval" }
                }
                assertNotEquals(revision1, waiting.string("currentRevision"))
                assertEquals(1, waiting.int("releasedBatches"))

                client.approveDeviceSetRollout("default", SET)
                val complete = eventually("the set's rollout complete") {
                    setRecord()?.takeIf { it.bool("complete") == true }
                }
                assertEquals(2, complete.int("releasedBatches"))

                // Undo: the set's spec is revision 1's again.
                client.undoDeviceSetRollout("default", SET)
                eventually("revision 1 current again") {
                    setRecord()?.takeIf { it.string("currentRevision") == revision1 }
                }
            }
        } finally {
            agents.forEach { it.stop() }
            jobs.forEach { it.join() }
            agents.forEach { it.close() }
        }
    }

    private suspend fun <T : Any> eventually(what: String, check: suspend () -> T?): T {
        repeat(600) {
            check()?.let { return it }
            delay(100)
        }
        error("timed out waiting for $what; rollout record: ${record()}")
    }

    private companion object {
        const val WORKLOAD = "kotlin-rollout"
        const val SET = "kotlin-set"

        /** A top-level string field of compact JSON. */
        fun String.string(key: String): String? =
            Regex("\"$key\":\"([^\"]*)\"").find(this)?.groupValues?.get(1)

        /** A top-level number field of compact JSON. */
        fun String.int(key: String): Int? =
            Regex("\"$key\":(\\d+)").find(this)?.groupValues?.get(1)?.toInt()

        /** A top-level boolean field of compact JSON. */
        fun String.bool(key: String): Boolean? =
            Regex("\"$key\":(true|false)").find(this)?.groupValues?.get(1)?.toBooleanStrict()
    }
}
