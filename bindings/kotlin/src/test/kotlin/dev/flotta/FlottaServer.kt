package dev.flotta

import java.io.File
import java.nio.file.Files
import java.nio.file.Path
import java.util.concurrent.TimeUnit

/**
 * A real flotta-server process (auto-approval on) over a temporary data directory,
 * listening on free loopback ports. Its admin.yaml holds the URLs, the CA and an
 * admin token; pki/ holds the registration identity devices enrol with.
 */
class FlottaServer private constructor(
    private val process: Process,
    val dataDir: Path,
    private val root: Path,
) : AutoCloseable {
    val adminYaml: Path = dataDir.resolve("admin.yaml")

    private val admin: Map<String, String> by lazy { readAdmin(adminYaml) }

    /** The management API URL. */
    val apiUrl: String get() = admin.getValue("server")

    /** The Edge API URL. */
    val edgeUrl: String get() = admin.getValue("edgeServer")

    /** PEM of the fleet CA. */
    val caPem: String get() = admin.getValue("certificateAuthority")

    /** The admin bearer token. */
    val token: String get() = admin.getValue("token")

    fun pki(name: String): String = Files.readString(dataDir.resolve("pki").resolve(name))

    override fun close() {
        process.destroy()
        if (!process.waitFor(10, TimeUnit.SECONDS)) process.destroyForcibly().waitFor()
        root.toFile().deleteRecursively()
    }

    companion object {
        fun start(): FlottaServer {
            val binary = System.getProperty("flotta.server.binary")
                ?: error("system property flotta.server.binary is not set")
            check(File(binary).canExecute()) { "no flotta-server at $binary" }
            val root = Files.createTempDirectory("flotta-kotlin-")
            val dataDir = root.resolve("data")
            val process = ProcessBuilder(
                binary,
                "--data-dir", dataDir.toString(),
                "--edge-listen", "127.0.0.1:0",
                "--api-listen", "127.0.0.1:0",
                "--auto-approve", "true",
            )
                .redirectErrorStream(true)
                .redirectOutput(root.resolve("server.log").toFile())
                .start()
            val server = FlottaServer(process, dataDir, root)
            // admin.yaml is written (atomically) once both listeners are bound.
            val deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30)
            while (!Files.exists(server.adminYaml)) {
                if (!process.isAlive || System.nanoTime() > deadline) {
                    val log = Files.readString(root.resolve("server.log"))
                    server.close()
                    error("flotta-server did not start:\n$log")
                }
                Thread.sleep(50)
            }
            return server
        }

        /** The top-level keys of admin.yaml; `|` blocks are read as their text. */
        private fun readAdmin(path: Path): Map<String, String> {
            val values = mutableMapOf<String, String>()
            val lines = Files.readAllLines(path)
            var i = 0
            while (i < lines.size) {
                val line = lines[i]
                val colon = line.indexOf(':')
                if (colon > 0 && !line.startsWith(" ")) {
                    val key = line.substring(0, colon)
                    val value = line.substring(colon + 1).trim()
                    if (value == "|") {
                        val block = StringBuilder()
                        while (i + 1 < lines.size && lines[i + 1].startsWith("  ")) {
                            block.append(lines[i + 1].trim()).append('\n')
                            i++
                        }
                        values[key] = block.toString()
                    } else {
                        values[key] = value
                    }
                }
                i++
            }
            return values
        }
    }
}
