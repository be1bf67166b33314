// A device agent embedded in a JVM application: workloads are "run" by a Kotlin
// WorkloadRuntime that only logs and remembers them, where firmware would start its
// own processes. Stop with Ctrl-C.
//
// Usage: Main EDGE_URL CA_FILE REGISTER_CERT REGISTER_KEY DEVICE_ID STATE_DIR
// (the files are the server's pki/ca.crt, pki/register.crt and pki/register.key).
package example

import dev.flotta.eventFlow
import dev.flotta.ffi.Agent
import dev.flotta.ffi.AgentSettings
import dev.flotta.ffi.FlottaException
import dev.flotta.ffi.RuntimeWorkload
import dev.flotta.ffi.Workload
import dev.flotta.ffi.WorkloadPhase
import dev.flotta.ffi.WorkloadRuntime
import dev.flotta.kind
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import java.io.File
import java.util.concurrent.ConcurrentHashMap
import kotlin.system.exitProcess

/** Keeps the workloads it is given; a real runtime would start and stop them. */
class LoggingRuntime : WorkloadRuntime {
    private val workloads = ConcurrentHashMap<String, Workload>()

    override suspend fun apply(workload: Workload) {
        println("run ${workload.name}:\n${workload.specification}")
        workloads[workload.name] = workload
    }

    override suspend fun remove(name: String) {
        println("stop $name")
        workloads.remove(name)
    }

    override suspend fun list(): List<RuntimeWorkload> =
        workloads.values.map { RuntimeWorkload(it.name, WorkloadPhase.RUNNING) }
}

fun main(args: Array<String>) {
    if (args.size != 6) {
        System.err.println("usage: Main EDGE_URL CA_FILE REGISTER_CERT REGISTER_KEY DEVICE_ID STATE_DIR")
        exitProcess(2)
    }
    val settings = AgentSettings(
        server = args[0],
        caPem = File(args[1]).readText(),
        registrationCertificatePem = File(args[2]).readText(),
        registrationKeyPem = File(args[3]).readText(),
        deviceId = args[4],
        stateDir = args[5],
        labels = mapOf("vendor" to "example"),
    )
    val agent = try {
        Agent(settings, LoggingRuntime())
    } catch (e: FlottaException) {
        System.err.println("cannot start the agent (${e.kind}): ${e.message}")
        exitProcess(1)
    }
    Runtime.getRuntime().addShutdownHook(Thread { agent.stop() })
    runBlocking {
        val events = launch { agent.eventFlow().collect { println("event: $it") } }
        agent.run()
        events.cancel()
    }
}
