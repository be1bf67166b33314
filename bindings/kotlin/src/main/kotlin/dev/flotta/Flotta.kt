// The idiomatic layer over the generated bindings (package dev.flotta.ffi): Flows
// for watches and agent events, and small conveniences. Everything else is used
// from the generated package directly.
package dev.flotta

import dev.flotta.ffi.Agent
import dev.flotta.ffi.AgentEvent
import dev.flotta.ffi.FlottaException
import dev.flotta.ffi.ManagementClient
import dev.flotta.ffi.ResourceKind
import dev.flotta.ffi.Selector
import dev.flotta.ffi.WatchEvent
import kotlinx.coroutines.NonCancellable
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.flow
import kotlinx.coroutines.withContext

/**
 * The kind of failure, e.g. `NotFound`, `Conflict`, `Unreachable`, `InvalidSelector`:
 * the name of the [FlottaException] subclass.
 */
val FlottaException.kind: String
    get() = this::class.simpleName ?: "Unknown"

/** Parses a Kubernetes label selector; throws [FlottaException.InvalidSelector]. */
fun labelSelector(text: String): Selector = Selector.parse(text)

/** Whether an object with these labels is selected. */
fun Selector.matches(vararg labels: Pair<String, String>): Boolean = matches(labels.toMap())

/**
 * Watches objects of [kind] as a cold [Flow]: each collection opens its own watch,
 * starting with an `Added` event per current object, then every change. Transient
 * connection failures are retried inside; a fatal error (bad token, bad selector) is
 * thrown from the flow. Cancelling the collector closes the connection.
 */
fun ManagementClient.watchFlow(
    kind: ResourceKind,
    namespace: String? = null,
    labelSelector: String? = null,
    fieldSelector: String? = null,
): Flow<WatchEvent> = flow {
    watch(kind, namespace, labelSelector, fieldSelector).use { stream ->
        try {
            while (true) {
                val event = stream.next() ?: break
                emit(event)
            }
        } finally {
            withContext(NonCancellable) { stream.cancel() }
        }
    }
}

/**
 * The agent's events as a [Flow], from the moment of collection. Runs until the
 * collector is cancelled or the agent is gone.
 */
fun Agent.eventFlow(): Flow<AgentEvent> = flow {
    subscribe().use { events ->
        while (true) {
            val event = events.next() ?: break
            emit(event)
        }
    }
}
