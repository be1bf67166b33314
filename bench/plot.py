"""Hand-written SVG of the fleet-size curve (standard library only): server memory
and propagation latency against the number of long-polling devices. Used by
figures.py; `fleet_svg` returns the document as a string."""
import math
from xml.sax.saxutils import escape

WIDTH, HEIGHT = 800, 500
# Vertical layout shared by the three panels.
TOP, BOTTOM = 92, 376  # plot area
PANEL_TITLE_Y = 76
X_TICK_Y = BOTTOM + 16
X_LABEL_Y = BOTTOM + 36
LEGEND_Y = BOTTOM + 60  # first legend line; the others 16 px apart

BLUE, LIGHT_BLUE, ORANGE, GREEN, RED, GREY = (
    "#1f77b4", "#9ecae1", "#d95f02", "#1b9e77", "#d62728", "#777777")


def fit_line(xs, ys):
    """Least squares y = slope * x + intercept; None without two distinct x."""
    n = len(xs)
    if n < 2:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    return slope, my - slope * mx


def nice_axis(high, intervals=5):
    """(top, step) of an axis from 0 that holds `high` in at most `intervals` steps
    of 1, 2, 2.5 or 5 times a power of ten."""
    if not high or high <= 0 or not math.isfinite(high):
        return 1.0, 0.2
    magnitude = 10 ** math.floor(math.log10(high / intervals))
    for m in (1, 2, 2.5, 5, 10, 20):
        step = m * magnitude
        if math.ceil(high / step - 1e-9) <= intervals:
            return math.ceil(high / step - 1e-9) * step, step
    return high, high / intervals


def tick_label(value, step, thousands=False):
    if thousands and value >= 1000 and step >= 1000:
        return f"{value / 1000:g}k"
    decimals = next((d for d in range(4) if abs(round(step * 10 ** d) - step * 10 ** d) < 1e-6), 3)
    return f"{value:,.{decimals}f}"


class Panel:
    """One plot area with its own axes, x from 0 to x_top and y from 0 to y_top."""

    def __init__(self, index, left, right, x_top, x_step, y_top, y_step):
        self.index, self.left, self.right = index, left, right
        self.x_top, self.x_step, self.y_top, self.y_step = x_top, x_step, y_top, y_step

    def x(self, value):
        return self.left + (self.right - self.left) * value / self.x_top

    def y(self, value):
        return BOTTOM - (BOTTOM - TOP) * value / self.y_top

    def frame(self, title, y_label):
        out = [f'<g id="panel-{self.index}">',
               f'<clipPath id="clip-{self.index}"><rect x="{self.left}" y="{TOP}" '
               f'width="{self.right - self.left}" height="{BOTTOM - TOP}"/></clipPath>',
               f'<text x="{(self.left + self.right) / 2:.1f}" y="{PANEL_TITLE_Y}" text-anchor="middle" '
               f'font-size="13" font-weight="bold">{escape(title)}</text>']
        steps = round(self.y_top / self.y_step)
        for i in range(steps + 1):
            value = i * self.y_step
            y = self.y(value)
            if i:
                out.append(f'<line x1="{self.left}" y1="{y:.1f}" x2="{self.right}" y2="{y:.1f}" '
                           f'stroke="#e5e5e5"/>')
            out.append(f'<line x1="{self.left - 4}" y1="{y:.1f}" x2="{self.left}" y2="{y:.1f}" stroke="#333"/>')
            out.append(f'<text x="{self.left - 7}" y="{y + 4:.1f}" text-anchor="end" font-size="11">'
                       f'{tick_label(value, self.y_step)}</text>')
        steps = round(self.x_top / self.x_step)
        for i in range(steps + 1):
            value = i * self.x_step
            x = self.x(value)
            out.append(f'<line x1="{x:.1f}" y1="{BOTTOM}" x2="{x:.1f}" y2="{BOTTOM + 4}" stroke="#333"/>')
            out.append(f'<text x="{x:.1f}" y="{X_TICK_Y}" text-anchor="middle" font-size="11">'
                       f'{tick_label(value, self.x_step, thousands=True)}</text>')
        out.append(f'<polyline points="{self.left},{TOP} {self.left},{BOTTOM} {self.right},{BOTTOM}" '
                   f'fill="none" stroke="#333"/>')
        out.append(f'<text x="{(self.left + self.right) / 2:.1f}" y="{X_LABEL_Y}" text-anchor="middle" '
                   f'font-size="11">devices connected (long-polling)</text>')
        cy = (TOP + BOTTOM) / 2
        lx = self.left - 44
        out.append(f'<text x="{lx}" y="{cy:.1f}" text-anchor="middle" font-size="11" '
                   f'transform="rotate(-90 {lx} {cy:.1f})">{escape(y_label)}</text>')
        return out

    def series(self, points, colour, dash=None, width=2, radius=3.5):
        """Points (x, y) joined by a line, each marked by a dot; None values skipped."""
        points = sorted((x, y) for x, y in points if x is not None and y is not None)
        if not points:
            return []
        coords = " ".join(f"{self.x(x):.1f},{self.y(y):.1f}" for x, y in points)
        dashed = f' stroke-dasharray="{dash}"' if dash else ""
        out = [f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="{width}"'
               f'{dashed} clip-path="url(#clip-{self.index})"/>']
        out += [f'<circle cx="{self.x(x):.1f}" cy="{self.y(y):.1f}" r="{radius}" fill="{colour}"/>'
                for x, y in points]
        return out

    def line(self, x1, y1, x2, y2, colour, dash):
        return [f'<line x1="{self.x(x1):.1f}" y1="{self.y(y1):.1f}" x2="{self.x(x2):.1f}" '
                f'y2="{self.y(y2):.1f}" stroke="{colour}" stroke-width="1.5" stroke-dasharray="{dash}" '
                f'clip-path="url(#clip-{self.index})"/>']

    def legend(self, entries):
        """entries: (label, colour, dash or None, with a dot)."""
        out = []
        for i, (label, colour, dash, dot) in enumerate(entries):
            y = LEGEND_Y + 16 * i
            x = self.left - 30
            dashed = f' stroke-dasharray="{dash}"' if dash else ""
            out.append(f'<line x1="{x}" y1="{y - 4}" x2="{x + 22}" y2="{y - 4}" stroke="{colour}" '
                       f'stroke-width="2"{dashed}/>')
            if dot:
                out.append(f'<circle cx="{x + 11}" cy="{y - 4}" r="3.5" fill="{colour}"/>')
            out.append(f'<text x="{x + 28}" y="{y}" font-size="11">{escape(label)}</text>')
        return out


def fleet_svg(points, fit, subtitle, memory_target_kib=16, p99_target_s=2):
    """points: dicts with devices, rss_mib, before_mib, per_device_kib, p50_s, p99_s
    and missed (None where unknown); fit: (KiB per device, MiB) or None."""
    x_max = max(p["devices"] for p in points)
    x_top, x_step = nice_axis(x_max, 4)
    width = WIDTH / 3

    def panel(index, *values):
        high = max([v for v in values if v is not None] or [1]) * 1.05
        y_top, y_step = nice_axis(high, 5)
        return Panel(index, round(index * width + 62), round((index + 1) * width - 14),
                     x_top, x_step, y_top, y_step)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
           f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" fill="#222">',
           f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
           f'<text x="{WIDTH / 2}" y="26" text-anchor="middle" font-size="17" font-weight="bold">'
           'flotta-server: memory and propagation latency against fleet size</text>',
           f'<text x="{WIDTH / 2}" y="46" text-anchor="middle" font-size="12" fill="#555">'
           f'{escape(subtitle)}</text>']

    # Panel 1: resident memory with the fleet connected, the fit, and before the fleet.
    fit_end = fit[0] * x_top / 1024 + fit[1] if fit else None
    rss = panel(0, *(p["rss_mib"] for p in points), fit_end)
    out += rss.frame("Server RSS", "MiB")
    if fit:
        out += rss.line(0, fit[1], x_top, fit_end, GREY, "6 4")
    out += rss.series([(p["devices"], p["before_mib"]) for p in points], LIGHT_BLUE, dash="2 3",
                      width=1.5, radius=2.5)
    out += rss.series([(p["devices"], p["rss_mib"]) for p in points], BLUE)
    entries = [("fleet connected", BLUE, None, True)]
    if fit:
        entries.append((f"fit: {fit[0]:.1f} KiB/device + {fit[1]:.0f} MiB", GREY, "6 4", False))
    entries.append(("before the fleet", LIGHT_BLUE, "2 3", True))
    out += rss.legend(entries)
    out.append("</g>")

    # Panel 2: what each connected device adds.
    per = panel(1, *(p["per_device_kib"] for p in points), memory_target_kib)
    out += per.frame("Server RSS per device", "KiB per device")
    out += per.line(0, memory_target_kib, x_top, memory_target_kib, GREY, "2 3")
    out += per.series([(p["devices"], p["per_device_kib"]) for p in points], ORANGE)
    out += per.legend([("(fleet − before) / devices", ORANGE, None, True),
                       (f"target ≤ {memory_target_kib} KiB", GREY, "2 3", False)])
    out.append("</g>")

    # Panel 3: propagation latency, with the deliveries a run missed.
    lat = panel(2, *(p["p99_s"] for p in points), *(p["p50_s"] for p in points), p99_target_s)
    out += lat.frame("Propagation latency", "seconds")
    out += lat.line(0, p99_target_s, x_top, p99_target_s, GREY, "2 3")
    out += lat.series([(p["devices"], p["p50_s"]) for p in points], GREEN)
    out += lat.series([(p["devices"], p["p99_s"]) for p in points], RED)
    for p in points:
        if p["missed"] and p["p99_s"] is not None:
            # Right of the middle the label ends at the point, so it stays in the panel.
            x = lat.x(p["devices"])
            right = x > (lat.left + lat.right) / 2
            out.append(f'<text x="{x - 4 if right else x + 4:.1f}" '
                       f'y="{lat.y(p["p99_s"]) - 8:.1f}" text-anchor="{"end" if right else "start"}" '
                       f'font-size="10" fill="{RED}">{p["missed"]:,} missed</text>')
    out += lat.legend([("p99", RED, None, True), ("p50", GREEN, None, True),
                       (f"target p99 ≤ {p99_target_s:g} s", GREY, "2 3", False)])
    out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"
