import Foundation

/// A self-contained SVG of stacked line-chart panels sharing one x axis: a title, and per
/// panel a frame, grid, tick labels, axis titles and a legend to the right of the plot area
/// (outside it, so it never covers a curve). Pure string building.
struct LineChart {
    struct Series {
        let label: String
        let points: [(x: Double, y: Double)]
        let color: String
        var dashed = false
        /// Circles at the points (always drawn for a single point, which has no line).
        var markers = false
        var lineWidth = 1.5
    }

    struct Panel {
        let yTitle: String
        let series: [Series]
        /// The y axis never extends past these bounds (e.g. 0…100 for percentages).
        var yLimits: ClosedRange<Double> = -Double.greatestFiniteMagnitude...Double.greatestFiniteMagnitude
        /// Whether the y axis must include 0.
        var includeZero = false
        var unit = ""
    }

    let title: String
    var subtitle = ""
    let xTitle: String
    let panels: [Panel]
    var width = 900.0
    var panelHeight = 300.0

    // Layout: margins around each panel's plot area.
    static let left = 78.0, right = 230.0, top = 64.0, panelGap = 64.0, bottom = 52.0

    func render() -> String {
        let plotWidth = width - LineChart.left - LineChart.right
        let plotHeight = panelHeight - LineChart.panelGap
        let height = LineChart.top + Double(panels.count) * panelHeight + LineChart.bottom - LineChart.panelGap
        var svg = """
        <?xml version="1.0" encoding="UTF-8"?>
        <svg xmlns="http://www.w3.org/2000/svg" width="\(f(width))" height="\(f(height))" viewBox="0 0 \(f(width)) \(f(height))" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">
        <title>\(escaped(title))</title>
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(f(width / 2))" y="26" text-anchor="middle" font-size="17" font-weight="bold">\(escaped(title))</text>

        """
        if !subtitle.isEmpty {
            svg += "<text x=\"\(f(width / 2))\" y=\"45\" text-anchor=\"middle\" fill=\"#555\">\(escaped(subtitle))</text>\n"
        }
        let allX = panels.flatMap { $0.series.flatMap { $0.points.map(\.x) } }
        let xAxis = Axis.nice(low: 0, high: allX.max() ?? 1, target: max(2, Int(plotWidth / 90)))
        for (index, panel) in panels.enumerated() {
            let y0 = LineChart.top + Double(index) * panelHeight
            svg += renderPanel(panel, x0: LineChart.left, y0: y0, plotWidth: plotWidth, plotHeight: plotHeight, xAxis: xAxis)
        }
        return svg + "</svg>\n"
    }

    private func renderPanel(_ panel: Panel, x0: Double, y0: Double, plotWidth: Double, plotHeight: Double, xAxis: Axis) -> String {
        let ys = panel.series.flatMap { $0.points.map(\.y) }
        var low = ys.min() ?? 0, high = ys.max() ?? 1
        if panel.includeZero { low = min(low, 0) }
        var yAxis = Axis.nice(low: low, high: high, target: max(2, Int(plotHeight / 50)))
        yAxis.clamp(to: panel.yLimits)
        let px = { (x: Double) in x0 + (x - xAxis.low) / (xAxis.high - xAxis.low) * plotWidth }
        // Curves at the axis limits stay clear of the frame.
        let inset = 8.0
        let py = { (y: Double) in y0 + plotHeight - inset - (y - yAxis.low) / (yAxis.high - yAxis.low) * (plotHeight - 2 * inset) }
        var s = "<g>\n"
        // Grid and tick labels.
        for tick in yAxis.ticks {
            let y = py(tick)
            s += "<line x1=\"\(f(x0))\" y1=\"\(f(y))\" x2=\"\(f(x0 + plotWidth))\" y2=\"\(f(y))\" stroke=\"#e4e4e4\"/>\n"
            s += "<text x=\"\(f(x0 - 7))\" y=\"\(f(y + 4))\" text-anchor=\"end\">\(yAxis.label(tick))\(panel.unit)</text>\n"
        }
        for tick in xAxis.ticks {
            let x = px(tick)
            s += "<line x1=\"\(f(x))\" y1=\"\(f(y0))\" x2=\"\(f(x))\" y2=\"\(f(y0 + plotHeight))\" stroke=\"#e4e4e4\"/>\n"
            s += "<line x1=\"\(f(x))\" y1=\"\(f(y0 + plotHeight))\" x2=\"\(f(x))\" y2=\"\(f(y0 + plotHeight + 5))\" stroke=\"#333\"/>\n"
            s += "<text x=\"\(f(x))\" y=\"\(f(y0 + plotHeight + 19))\" text-anchor=\"middle\">\(xAxis.label(tick))</text>\n"
        }
        s += "<rect x=\"\(f(x0))\" y=\"\(f(y0))\" width=\"\(f(plotWidth))\" height=\"\(f(plotHeight))\" fill=\"none\" stroke=\"#333\"/>\n"
        // Axis titles.
        s += "<text x=\"\(f(x0 + plotWidth / 2))\" y=\"\(f(y0 + plotHeight + 38))\" text-anchor=\"middle\" font-size=\"13\">\(escaped(xTitle))</text>\n"
        let yTitleX = x0 - 58, yTitleY = y0 + plotHeight / 2
        s += "<text x=\"\(f(yTitleX))\" y=\"\(f(yTitleY))\" text-anchor=\"middle\" font-size=\"13\" transform=\"rotate(-90 \(f(yTitleX)) \(f(yTitleY)))\">\(escaped(panel.yTitle))</text>\n"
        // Curves, clipped to the plot area.
        let clip = "clip\(Int(y0))"
        s += "<clipPath id=\"\(clip)\"><rect x=\"\(f(x0 - 4))\" y=\"\(f(y0 - 4))\" width=\"\(f(plotWidth + 8))\" height=\"\(f(plotHeight + 8))\"/></clipPath>\n"
        s += "<g clip-path=\"url(#\(clip))\">\n"
        for series in panel.series where !series.points.isEmpty {
            let points = series.points.map { "\(f(px($0.x))),\(f(py($0.y)))" }
            if points.count > 1 {
                s += "<polyline fill=\"none\" stroke=\"\(series.color)\" stroke-width=\"\(series.lineWidth)\" stroke-linejoin=\"round\"\(series.dashed ? " stroke-dasharray=\"6 4\"" : "") points=\"\(points.joined(separator: " "))\"/>\n"
            }
            if series.markers || series.points.count == 1 {
                for p in series.points {
                    s += "<circle cx=\"\(f(px(p.x)))\" cy=\"\(f(py(p.y)))\" r=\"3.5\" fill=\"\(series.color)\" stroke=\"white\" stroke-width=\"1\"/>\n"
                }
            }
        }
        s += "</g>\n"
        // Legend, right of the plot area.
        let legendX = x0 + plotWidth + 18
        for (i, series) in panel.series.enumerated() {
            let y = y0 + 12 + Double(i) * 22
            s += "<line x1=\"\(f(legendX))\" y1=\"\(f(y))\" x2=\"\(f(legendX + 26))\" y2=\"\(f(y))\" stroke=\"\(series.color)\" stroke-width=\"\(series.lineWidth + 0.5)\"\(series.dashed ? " stroke-dasharray=\"6 4\"" : "")/>\n"
            if series.markers { s += "<circle cx=\"\(f(legendX + 13))\" cy=\"\(f(y))\" r=\"3.5\" fill=\"\(series.color)\"/>\n" }
            s += "<text x=\"\(f(legendX + 34))\" y=\"\(f(y + 4))\">\(escaped(series.label))</text>\n"
        }
        return s + "</g>\n"
    }

    /// A linear axis with "nice" ticks (1, 2 or 5 × 10ⁿ apart).
    struct Axis {
        var low: Double
        var high: Double
        let step: Double

        static func nice(low: Double, high: Double, target: Int) -> Axis {
            var (low, high) = (low, high)
            if high - low < 1e-12 {
                let pad = max(abs(high) * 0.1, 1e-3)
                (low, high) = (low - pad, high + pad)
            }
            let raw = (high - low) / Double(target)
            let magnitude = pow(10, (log10(raw)).rounded(.down))
            let fraction = raw / magnitude
            let step = (fraction < 1.5 ? 1 : fraction < 3 ? 2 : fraction < 7 ? 5 : 10) * magnitude
            return Axis(low: (low / step).rounded(.down) * step, high: (high / step).rounded(.up) * step, step: step)
        }

        mutating func clamp(to limits: ClosedRange<Double>) {
            low = max(low, limits.lowerBound)
            high = min(high, limits.upperBound)
        }

        var ticks: [Double] {
            let first = (low / step - 1e-9).rounded(.up)
            return stride(from: first, through: high / step + 1e-9, by: 1).map { $0 * step }
        }

        func label(_ value: Double) -> String {
            let decimals = max(0, Int((-log10(step)).rounded(.up)))
            let text = String(format: "%.\(decimals)f", value)
            return text.hasPrefix("-") && Double(text) == 0 ? String(text.dropFirst()) : text
        }
    }

    private func f(_ value: Double) -> String { String(format: "%.1f", value) }

    private func escaped(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
