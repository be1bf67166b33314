package dev.flotta

import dev.flotta.ffi.Agent
import dev.flotta.ffi.AgentSettings
import dev.flotta.ffi.ApplyAction
import dev.flotta.ffi.ManagementClient
import dev.flotta.ffi.OsDeployment
import dev.flotta.ffi.OsDeployments
import dev.flotta.ffi.OsTarget
import dev.flotta.ffi.OsUpdater
import dev.flotta.ffi.ResourceKind
import kotlinx.coroutines.CompletableDeferred
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.delay
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.junit.jupiter.api.AfterAll
import org.junit.jupiter.api.BeforeAll
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestInstance
import java.nio.file.Files
import java.util.Collections
import kotlin.test.assertEquals

/**
 * Two A/B slots as a Kotlin OS backend: `stage` writes the other slot, `activate`
 * makes it the next boot, `rollback` the slot booted before; [boot] is what the
 * firmware does when the device restarts.
 */
class AbSlots(booted: String) : OsUpdater {
    @Volatile var bootedId: String = booted
    @Volatile private var staged: String? = null
    @Volatile private var previous: String? = null
    @Volatile private var nextBoot: String? = null
    val calls: MutableList<String> = Collections.synchronizedList(mutableListOf())
    @Volatile var rebootRequested = CompletableDeferred<Unit>()

    override suspend fun booted() = OsDeployments(
        booted = OsDeployment(bootedId),
        staged = staged?.let { OsDeployment(it) },
        rollback = previous?.let { OsDeployment(it) },
    )

    override suspend fun stage(target: OsTarget) {
        calls += "stage ${target.commitId}"
        staged = target.commitId
    }

    override suspend fun activate() {
        calls += "activate"
        nextBoot = staged
        rebootRequested.complete(Unit)
    }

    override suspend fun rollback() {
        calls += "rollback"
        nextBoot = previous
        staged = null
    }

    override suspend fun reboot() {
        calls += "reboot"
        rebootRequested.complete(Unit)
    }

    override suspend fun health() = true

    fun boot() {
        nextBoot?.takeIf { it != bootedId }?.let { previous = bootedId; bootedId = it }
        nextBoot = null
        staged = null
        rebootRequested = CompletableDeferred()
    }
}

/**
 * An OS update through a Kotlin backend: the agent stages, asks for the reboot
 * (the test ends the agent and boots the slots, as the device would), and the agent
 * started after the boot commits the update and reports the new commit.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class OsUpdateTest {
    private lateinit var server: FlottaServer
    private lateinit var client: ManagementClient
    private val stateDir = Files.createTempDirectory("flotta-agent-os-").toString()

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

    private fun settings() = AgentSettings(
        server = server.edgeUrl,
        caPem = server.caPem,
        registrationCertificatePem = server.pki("register.crt"),
        registrationKeyPem = server.pki("register.key"),
        deviceId = DEVICE,
        stateDir = stateDir,
        heartbeatPeriodMs = 500u,
        configWaitMs = 1_000u,
        retryInitialMs = 50u,
        retryMaxMs = 500u,
    )

    /** The commit the server's device status reports (`null` before the device registered). */
    private suspend fun reportedCommit(): String? {
        val device = runCatching { client.get(ResourceKind.EDGE_DEVICE, "default", DEVICE) }.getOrNull()
            ?: return null
        return Regex("\"currentCommitID\":\"([^\"]*)\"").find(device.toJson())?.groupValues?.get(1)
    }

    @Test
    fun `a Kotlin OS backend is driven across the reboot`() = runBlocking {
        val slots = AbSlots("c1")
        withTimeout(120_000) {
            var agent = Agent.withOsUpdater(settings(), RecordingRuntime(), slots)
            var job = launch(Dispatchers.Default) { agent.run() }
            eventually("c1 reported") { reportedCommit()?.takeIf { it == "c1" } }

            val outcome = client.serverSideApply(
                "default",
                """
                apiVersion: management.project-flotta.io/v1alpha1
                kind: EdgeDevice
                metadata:
                  name: $DEVICE
                spec:
                  osInformation:
                    automaticallyUpgrade: true
                    commitID: c2
                """.trimIndent(),
                "os-update-test",
                false,
            )
            assertEquals(listOf(ApplyAction.SERVER_SIDE_APPLIED), outcome.map { it.action }, "outcome: $outcome")
            slots.rebootRequested.await()
            assertEquals("Rebooting", agent.status().osUpdatePhase)
            agent.stop()
            job.join()
            agent.close()

            slots.boot()
            agent = Agent.withOsUpdater(settings(), RecordingRuntime(), slots)
            job = launch(Dispatchers.Default) { agent.run() }
            val committed = eventually("the update committed") {
                agent.status().takeIf { it.osUpdatePhase == "Committed" }
            }
            assertEquals("c2", committed.osUpdateTarget)
            eventually("c2 reported") { reportedCommit()?.takeIf { it == "c2" } }
            assertEquals(listOf("stage c2", "activate"), slots.calls.toList())
            agent.stop()
            job.join()
            agent.close()
        }
    }

    private suspend fun <T : Any> eventually(what: String, check: suspend () -> T?): T {
        repeat(600) {
            check()?.let { return it }
            delay(100)
        }
        error("timed out waiting for $what")
    }

    private companion object {
        const val DEVICE = "kotlin-os-device"
    }
}
