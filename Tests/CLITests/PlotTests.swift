import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import TestSupport
import XCTest

/// `plot METRICS -o FILE.svg`: a well-formed SVG with both panels' curves and legends.
final class PlotTests: XCTestCase {
    /// Parses the SVG as XML and returns its document.
    func parseSVG(_ path: String) throws -> XMLDocument {
        let document = try XMLDocument(contentsOf: URL(fileURLWithPath: path))
        XCTAssertEqual(document.rootElement()?.name, "svg")
        return document
    }

    /// An attribute's value ("" if absent). (`attribute(forName:)` finds nothing on Linux's
    /// Foundation when the document has a default namespace, as SVG has.)
    func attribute(_ name: String, of element: XMLElement) -> String {
        element.attributes?.first { $0.name == name }?.stringValue ?? ""
    }

    func texts(_ document: XMLDocument) throws -> [String] {
        try document.nodes(forXPath: "//*[local-name()='text']").compactMap(\.stringValue)
    }

    func testPlotsTheMetricsOfATrainingRun() throws {
        let trained = try TrainedModel.files()
        let svg = trained.directory + "/curves.svg"
        let result = try runTrainer(["plot", trained.metrics, "-o", svg, "--title", "seed-cnn-bn <synthetic> & co"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let document = try parseSVG(svg)
        let labels = try texts(document)
        for legend in ["train loss (batch)", "train loss (epoch mean)", "test loss", "train accuracy (batch)", "test accuracy"] {
            XCTAssertTrue(labels.contains(legend), "no legend '\(legend)' in \(labels)")
        }
        XCTAssertTrue(labels.contains("seed-cnn-bn <synthetic> & co"), "the title is escaped and kept: \(labels)")
        XCTAssertTrue(labels.contains("step") && labels.contains("loss") && labels.contains("accuracy (%)"), "axis titles: \(labels)")
        XCTAssertTrue(labels.contains("36 steps, 2 evaluations on the test set"), "\(labels)")
        let curves = try document.nodes(forXPath: "//*[local-name()='polyline' or local-name()='path']")
        XCTAssertGreaterThanOrEqual(curves.count, 2)
        // Every polyline point lies inside the image.
        let root = try XCTUnwrap(document.rootElement())
        let width = try XCTUnwrap(Double(attribute("width", of: root)))
        let height = try XCTUnwrap(Double(attribute("height", of: root)))
        for case let polyline as XMLElement in curves {
            let points = attribute("points", of: polyline).split(separator: " ")
            XCTAssertGreaterThanOrEqual(points.count, 2)
            for point in points {
                let xy = point.split(separator: ",").compactMap { Double($0) }
                XCTAssertEqual(xy.count, 2)
                XCTAssertTrue((0...width).contains(xy[0]) && (0...height).contains(xy[1]), "point \(point) outside the image")
            }
        }
    }

    /// A resumed run (records repeating steps 3–4) reads as one curve: the later records win.
    func testLaterRecordsReplaceEarlierOnesFromTheirStep() throws {
        let dir = TestSupport.temporaryDirectory("plot")
        let metrics = dir + "/metrics.jsonl", svg = dir + "/out.svg"
        let lines = [
            #"{"kind":"step","step":1,"epoch":1,"loss":2.3,"accuracy":0.1}"#,
            #"{"kind":"step","step":3,"epoch":1,"loss":9.0,"accuracy":0.0}"#,
            #"{"kind":"step","step":4,"epoch":1,"loss":9.0,"accuracy":0.0}"#,
            #"{"kind":"step","step":3,"epoch":1,"loss":1.5,"accuracy":0.5}"#,
            "",
            #"{"kind":"epoch","step":4,"epoch":1,"loss":1.2,"accuracy":0.6,"train_loss":1.6,"test_loss":1.3,"test_accuracy":0.55}"#,
            #"{"kind":"note","text":"other kinds are skipped"}"#,
        ]
        try lines.joined(separator: "\n").write(toFile: metrics, atomically: true, encoding: .utf8)
        let result = try runTrainer(["plot", metrics, "-o", svg])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stdout.contains("3 logged steps, 1 test evaluation"), result.stdout)
        let document = try parseSVG(svg)
        let labels = try texts(document)
        XCTAssertTrue(labels.contains("Training curves: metrics.jsonl"), "\(labels)")
        // The loss axis ends at 2.5, not 9: the superseded records are gone.
        XCTAssertTrue(labels.contains("2.5"), "\(labels)")
        XCTAssertFalse(labels.contains("9.0"), "\(labels)")
    }

    /// A kill or a full disk leaves the last line cut off: plot draws the lines before it and
    /// warns in one line. A malformed line before the last is still an error.
    func testACutOffLastLineIsIgnoredWithAWarning() throws {
        let dir = TestSupport.temporaryDirectory("plot")
        let metrics = dir + "/metrics.jsonl", svg = dir + "/out.svg"
        let lines = [
            #"{"kind":"step","step":1,"epoch":1,"loss":2.3,"accuracy":0.1}"#,
            #"{"kind":"step","step":2,"epoch":1,"loss":1.9,"accuracy":0.3}"#,
            #"{"kind":"step","step":3,"epoch":1,"lo"#,
        ]
        try lines.joined(separator: "\n").write(toFile: metrics, atomically: true, encoding: .utf8)
        let result = try runTrainer(["plot", metrics, "-o", svg])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(result.stderr, "warning: ignored the cut-off last line (line 3, no newline and not JSON) of metrics file '\(metrics)'\n")
        XCTAssertTrue(result.stdout.contains("2 logged steps, 0 test evaluations"), result.stdout)
        XCTAssertTrue(try texts(parseSVG(svg)).contains("2 steps, 0 evaluations on the test set"))

        try [lines[0], "not json", lines[1], lines[2]].joined(separator: "\n").write(toFile: metrics, atomically: true, encoding: .utf8)
        try assertFails(["plot", metrics, "-o", svg], status: 1, message: "line 2: not a JSON object")
    }

    func testBadMetricsGiveOneLineAndExitCode1() throws {
        let dir = TestSupport.temporaryDirectory("plot")
        try "".write(toFile: dir + "/empty.jsonl", atomically: true, encoding: .utf8)
        try "{\"kind\":\"step\",\"step\":1,\"loss\":2.3,\"accuracy\":0.1}\nnot json\n".write(toFile: dir + "/bad.jsonl", atomically: true, encoding: .utf8)
        try "{\"kind\":\"step\",\"step\":1,\"accuracy\":0.1}\n".write(toFile: dir + "/noloss.jsonl", atomically: true, encoding: .utf8)
        try assertFails(["plot", dir + "/missing.jsonl", "-o", dir + "/x.svg"], status: 1,
                        message: "cannot read metrics file '\(dir)/missing.jsonl'")
        try assertFails(["plot", dir + "/empty.jsonl", "-o", dir + "/x.svg"], status: 1, message: "has no step or epoch records")
        try assertFails(["plot", dir + "/bad.jsonl", "-o", dir + "/x.svg"], status: 1, message: "line 2: not a JSON object")
        try assertFails(["plot", dir + "/noloss.jsonl", "-o", dir + "/x.svg"], status: 1, message: "line 1: a step record without a finite number \"loss\"")
        try "{\"kind\":\"step\",\"step\":1,\"loss\":2.3,\"accuracy\":0.1}\n".write(toFile: dir + "/good.jsonl", atomically: true, encoding: .utf8)
        try assertFails(["plot", dir + "/good.jsonl", "-o", "/nonexistent/x.svg"], status: 1, message: "cannot write '/nonexistent/x.svg'")
        try assertFails(["plot", dir + "/bad.jsonl", "-o", dir + "/x.svg", "--width", "10"], status: 64, message: "--width must be between 500 and 10000")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/x.svg"))
    }

    func testHelpShowsEveryOptionAndExamples() throws {
        for command in ["plot", "predict", "export"] {
            let help = try runTrainer([command, "--help"])
            XCTAssertEqual(help.status, 0)
            XCTAssertTrue(help.stdout.contains("Examples:"), "\(command) --help: \(help.stdout)")
            XCTAssertTrue(help.stdout.contains("(default: "), "\(command) --help: \(help.stdout)")
        }
    }
}
