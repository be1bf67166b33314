package dev.flotta

import dev.flotta.ffi.FieldSelector
import dev.flotta.ffi.FlottaException
import dev.flotta.ffi.Resource
import dev.flotta.ffi.ResourceKind
import dev.flotta.ffi.Selector
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows
import kotlin.test.assertContains
import kotlin.test.assertEquals
import kotlin.test.assertFalse
import kotlin.test.assertNotEquals
import kotlin.test.assertTrue

class SelectorTest {
    @Test
    fun `canonical form sorts requirements by key and values`() {
        val selector = labelSelector("zone notin (b,a), app==web, !legacy, tier")
        assertEquals("app==web,!legacy,tier,zone notin (a,b)", selector.toString())
        assertEquals(listOf("legacy", "app", "tier", "zone").sorted(), selector.keys().sorted())
        assertEquals(selector, Selector.parse(selector.toString()))
        assertNotEquals(selector, Selector.parse("app=web"))
    }

    @Test
    fun `matching follows Kubernetes semantics`() {
        val selector = labelSelector("app=web,zone notin (a,b),!legacy")
        assertTrue(selector.matches("app" to "web"), "notin matches objects without the key")
        assertTrue(selector.matches("app" to "web", "zone" to "c"))
        assertFalse(selector.matches("app" to "web", "zone" to "a"))
        assertFalse(selector.matches("app" to "web", "legacy" to "yes"))
        assertFalse(selector.matches("app" to "db"))
        assertTrue(labelSelector("replicas>2").matches("replicas" to "3"))
        assertFalse(labelSelector("replicas>2").matches("replicas" to "2"))
    }

    @Test
    fun `the empty selector selects everything`() {
        val everything = labelSelector("")
        assertTrue(everything.isEverything())
        assertTrue(everything.matches(emptyMap()))
        assertEquals(everything, Selector.everything())
        assertFalse(labelSelector("a").isEverything())
    }

    @Test
    fun `bad selectors throw with the byte offset`() {
        val error = assertThrows<FlottaException.InvalidSelector> { labelSelector("app in (web") }
        assertEquals("InvalidSelector", error.kind)
        assertContains(error.message ?: "", "byte 11")
        val longValue = "v".repeat(64)
        val tooLong = assertThrows<FlottaException.InvalidSelector> { labelSelector("app=$longValue") }
        assertContains(tooLong.message ?: "", "63")
    }

    @Test
    fun `field selectors check fields per kind and match resources`() {
        val device = Resource.parse(
            """
            apiVersion: management.project-flotta.io/v1alpha1
            kind: EdgeDevice
            metadata:
              name: cam-1
              namespace: lab
              labels:
                site: north
            spec:
              requestTime: "2026-01-01T00:00:00Z"
            """.trimIndent(),
        )
        val byName = FieldSelector.parse(ResourceKind.EDGE_DEVICE, "metadata.name=cam-1")
        assertTrue(byName.matches(device))
        assertFalse(FieldSelector.parse(ResourceKind.EDGE_DEVICE, "metadata.name=cam-2").matches(device))
        assertFalse(
            FieldSelector.parse(ResourceKind.EDGE_WORKLOAD, "metadata.name=cam-1").matches(device),
            "a selector for another kind never matches",
        )
        assertTrue(labelSelector("site in (north,south)").matchesResource(device))
        val unknown = assertThrows<FlottaException.InvalidSelector> {
            FieldSelector.parse(ResourceKind.EDGE_DEVICE, "spec.colour=red")
        }
        assertContains(unknown.message ?: "", "metadata.name", message = "lists the valid fields")
    }
}
