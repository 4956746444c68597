import Foundation
import TestSupport
import XCTest

/// `predict`: a CSV of classes and probabilities for a data split or for PGM/PPM images.
final class PredictTests: XCTestCase {
    /// The CSV's header fields and its rows' fields.
    func parseCSV(_ text: String) -> (header: [String], rows: [[String]]) {
        let lines = text.split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
        return (lines.first ?? [], Array(lines.dropFirst()))
    }

    /// Checks one row from the predicted class on: classes in 0..<10, distinct, probabilities
    /// in [0, 1] and not increasing.
    func checkPredictions(_ fields: ArraySlice<String>, top: Int, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(fields.count, 2 * top, file: file, line: line)
        let classes = stride(from: fields.startIndex, to: fields.endIndex, by: 2).compactMap { Int(fields[$0]) }
        let probabilities = stride(from: fields.startIndex + 1, to: fields.endIndex, by: 2).compactMap { Double(fields[$0]) }
        XCTAssertEqual(classes.count, top, "\(fields)", file: file, line: line)
        XCTAssertEqual(Set(classes).count, top, "\(fields)", file: file, line: line)
        XCTAssertTrue(classes.allSatisfy { (0..<10).contains($0) }, "\(fields)", file: file, line: line)
        XCTAssertEqual(probabilities.count, top, "\(fields)", file: file, line: line)
        XCTAssertTrue(probabilities.allSatisfy { (0...1).contains($0) }, "\(fields)", file: file, line: line)
        XCTAssertEqual(probabilities, probabilities.sorted(by: >), "\(fields)", file: file, line: line)
    }

    func testPredictsASplitAsCSV() throws {
        let trained = try TrainedModel.files()
        let result = try runTrainer(["predict", "--checkpoint", trained.checkpoint, "--data", TrainedModel.data,
                                     "--limit", "50", "--top", "3"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let csv = parseCSV(result.stdout)
        XCTAssertEqual(csv.header, ["index", "predicted", "confidence", "top2", "p2", "top3", "p3"])
        XCTAssertEqual(csv.rows.count, 50)
        for (i, row) in csv.rows.enumerated() {
            XCTAssertEqual(row.first, String(i))
            checkPredictions(row.dropFirst(), top: 3)
        }
        // All ten classes' probabilities sum to 1; -o writes what stdout shows; one column by default.
        let output = trained.directory + "/predictions.csv"
        let all = try runTrainer(["predict", "--checkpoint", trained.checkpoint, "--data", TrainedModel.data,
                                  "--top", "10", "-o", output])
        XCTAssertEqual(all.status, 0, all.stderr)
        let allRows = parseCSV(try String(contentsOfFile: output, encoding: .utf8)).rows
        XCTAssertEqual(allRows.count, 120, "the whole test split")
        for row in allRows {
            let sum = stride(from: 2, to: row.count, by: 2).compactMap { Double(row[$0]) }.reduce(0, +)
            XCTAssertEqual(sum, 1, accuracy: 1e-5, "\(row)")
            XCTAssertEqual(Array(row.prefix(3)), Array(allRows[Int(row[0])!].prefix(3)))
        }
        XCTAssertEqual(Array(allRows.prefix(50).map { Array($0.prefix(3)) }), csv.rows.map { Array($0.prefix(3)) })
        let plain = try runTrainer(["predict", "--checkpoint", trained.checkpoint, "--data", TrainedModel.data, "--limit", "2"])
        let firstTwo: [String] = allRows.prefix(2).map { row in row.prefix(3).joined(separator: ",") }
        XCTAssertEqual(plain.stdout, (["index,predicted,confidence"] + firstTwo).map { $0 + "\n" }.joined())
    }

    /// A binary PGM header (with a comment, as some tools write) and 28×28 pixels.
    func pgm(_ pixels: [UInt8], width: Int = 28, height: Int = 28, magic: String = "P5", maxval: Int = 255) -> Data {
        Data("\(magic)\n# written by PredictTests\n\(width) \(height)\n\(maxval)\n".utf8) + Data(pixels)
    }

    func testPredictsPGMImages() throws {
        let trained = try TrainedModel.files()
        let dir = TestSupport.temporaryDirectory("predict")
        let pixels: [UInt8] = (0..<(28 * 28)).map { (i: Int) -> UInt8 in UInt8((i * 37 + i / 28 * 11) % 256) }
        try pgm(pixels).write(to: URL(fileURLWithPath: dir + "/a.pgm"))
        try pgm(Array(pixels.reversed())).write(to: URL(fileURLWithPath: dir + "/b, with comma.pgm"))
        let one = try runTrainer(["predict", "--checkpoint", trained.checkpoint, "--image", dir + "/a.pgm", "--top", "2"])
        XCTAssertEqual(one.status, 0, one.stderr)
        let csv = parseCSV(one.stdout)
        XCTAssertEqual(csv.header, ["image", "predicted", "confidence", "top2", "p2"])
        XCTAssertEqual(csv.rows.count, 1)
        XCTAssertEqual(csv.rows[0].first, dir + "/a.pgm")
        checkPredictions(csv.rows[0].dropFirst(), top: 2)
        // Several images: one row each, in order; the same image gives the same row.
        let two = try runTrainer(["predict", "--checkpoint", trained.checkpoint, "--image", dir + "/b, with comma.pgm",
                                  "--image", dir + "/a.pgm", "--top", "2"])
        XCTAssertEqual(two.status, 0, two.stderr)
        let lines = two.stdout.split(separator: "\n")
        XCTAssertEqual(lines.count, 3)
        XCTAssertTrue(lines[1].hasPrefix("\"\(dir)/b, with comma.pgm\","), String(lines[1]))
        XCTAssertEqual(String(lines[2]), one.stdout.split(separator: "\n")[1].description)
    }

    func testBadImagesAndFlagsGiveOneLine() throws {
        let trained = try TrainedModel.files()
        let dir = TestSupport.temporaryDirectory("predict")
        let pixels = [UInt8](repeating: 128, count: 28 * 28)
        let files: [(String, Data)] = [
            ("ascii.pgm", Data("P2\n28 28\n255\n0 0 0\n".utf8)),
            ("deep.pgm", pgm(pixels + pixels, maxval: 65535)),
            ("short.pgm", pgm(Array(pixels.dropLast(10)))),
            ("long.pgm", pgm(pixels + [0])),
            ("small.pgm", pgm([UInt8](repeating: 0, count: 16 * 16), width: 16, height: 16)),
            ("rgb.ppm", pgm(pixels + pixels + pixels, magic: "P6")),
            ("text.pgm", Data("hello".utf8)),
            ("header.pgm", Data("P5\n28".utf8)),
        ]
        for (name, data) in files { try data.write(to: URL(fileURLWithPath: dir + "/" + name)) }
        let predict = ["predict", "--checkpoint", trained.checkpoint]
        let cases: [([String], Int32, String)] = [
            (predict + ["--image", dir + "/ascii.pgm"], 1, "is an ASCII (P2/P3) netpbm file"),
            (predict + ["--image", dir + "/deep.pgm"], 1, "has maxval 65535; only 8-bit images with maxval 255"),
            (predict + ["--image", dir + "/short.pgm"], 1, "is truncated: 774 bytes of pixels, a 28×28 PGM needs 784"),
            (predict + ["--image", dir + "/long.pgm"], 1, "has 1 bytes after its pixels"),
            (predict + ["--image", dir + "/small.pgm"], 1, "is 1×16×16 (channels×height×width) but the model takes 1×28×28; it needs a 28×28 PGM (P5)"),
            (predict + ["--image", dir + "/rgb.ppm"], 1, "is 3×28×28 (channels×height×width) but the model takes 1×28×28"),
            (predict + ["--image", dir + "/text.pgm"], 1, "is not a PGM or PPM file"),
            (predict + ["--image", dir + "/header.pgm"], 1, "has a truncated or malformed header (reading its height)"),
            (predict + ["--image", dir + "/missing.pgm"], 1, "cannot read image '\(dir)/missing.pgm'"),
            (predict + ["--data", "/nonexistent"], 1, "data directory '/nonexistent' does not exist"),
            (["predict", "--checkpoint", dir + "/none.scnn"], 1, "cannot read checkpoint '\(dir)/none.scnn'"),
            (predict + ["--top", "11", "--data", TrainedModel.data], 64, "--top 11 is more than the model's 10 classes"),
            (predict + ["--top", "0"], 64, "--top must be at least 1"),
            (predict + ["--split", "holdout"], 64, "The value 'holdout' is invalid for '--split <split>'"),
            (predict + ["--split", "validation"], 64, "--split validation: the checkpoint was trained without --val-split"),
            (predict + ["--limit", "5", "--image", dir + "/a.pgm"], 64, "--limit applies to --data, not to --image"),
        ]
        for (arguments, status, message) in cases {
            try assertFails(arguments, status: status, message: message)
        }
    }
}
