/// One training sample's augmentation (`Augmentation`): its random draws, a pure function of
/// the epoch's RNG (keyed by seed and epoch) and the sample's index in the training set, and
/// how they turn the sample's bytes into inputs. The draws use fixed counters whichever
/// transforms are on, so turning one on never changes another's draws.
public struct AugmentationDraw: Equatable, Sendable {
    /// Output pixel (y, x) reads input pixel (y + dy, x + dx) of the unpadded image, zero
    /// outside it; −P … P (torchvision's crop offset minus the padding).
    public var dy = 0, dx = 0
    /// Mirrored left–right after the crop: output column x is cropped column W − 1 − x.
    public var flip = false
    /// The rectangle set to 0 after normalisation (empty ranges: none).
    public var erasedRows = 0..<0, erasedColumns = 0..<0

    public init() {}

    /// Counters per sample: 0–1 the crop, 2 the flip, 3 whether to erase, then four per
    /// erasing attempt (area, aspect ratio, top, left).
    static let countersPerSample: UInt64 = 64

    public init(_ augmentation: Augmentation, rng: CounterRNG, index: Int, height: Int, width: Int) {
        let base = UInt64(index) * AugmentationDraw.countersPerSample
        if augmentation.cropPadding > 0 {
            let p = augmentation.cropPadding
            dy = rng.integer(base, below: 2 * p + 1) - p
            dx = rng.integer(base + 1, below: 2 * p + 1) - p
        }
        flip = augmentation.flip && rng.unitFloat(base + 2) < 0.5
        guard augmentation.erase, rng.unitFloat(base + 3) < Augmentation.eraseProbability else { return }
        // torchvision's RandomErasing.get_params, with its rounding (Python's round: to even).
        let area = Double(height * width)
        let (scale, ratio) = (Augmentation.eraseScale, Augmentation.eraseRatio)
        let logRatio = (low: ScalarMath.log(ratio.low), high: ScalarMath.log(ratio.high))
        for attempt in 0..<UInt64(Augmentation.eraseAttempts) {
            let counter = base + 4 + 4 * attempt
            let erasedArea = area * (scale.low + (scale.high - scale.low) * Double(rng.unitFloat(counter)))
            let aspect = ScalarMath.exp(logRatio.low + (logRatio.high - logRatio.low) * Double(rng.unitFloat(counter + 1)))
            let h = Int((erasedArea * aspect).squareRoot().rounded(.toNearestOrEven))
            let w = Int((erasedArea / aspect).squareRoot().rounded(.toNearestOrEven))
            guard h < height, w < width else { continue }
            let top = rng.integer(counter + 2, below: height - h + 1), left = rng.integer(counter + 3, below: width - w + 1)
            (erasedRows, erasedColumns) = (top..<(top + h), left..<(left + w))
            return
        }
    }

    /// Writes the inputs of one C×H×W sample `pixels`, cropped and flipped, through the
    /// per-channel tables `values` (`InputNormalization.values`; a padding pixel is byte 0),
    /// then erased.
    package func apply(_ values: UnsafePointer<Float>, to pixels: UnsafePointer<UInt8>, shape: [Int],
               into out: UnsafeMutablePointer<Float>) {
        let (channels, height, width) = (shape[0], shape[1], shape[2])
        // The output columns whose source column lies inside the image.
        let inside = flip ? max(0, dx)..<min(width, width + dx) : max(0, -dx)..<min(width, width - dx)
        for c in 0..<channels {
            let table = values + c * 256, padding = table[0]
            for y in 0..<height {
                let row = out + (c * height + y) * width, sourceY = y + dy
                guard (0..<height).contains(sourceY), !inside.isEmpty else {
                    row.update(repeating: padding, count: width)
                    continue
                }
                let source = pixels + (c * height + sourceY) * width
                row.update(repeating: padding, count: inside.lowerBound)
                if flip {
                    for x in inside { row[x] = table[Int(source[width - 1 - x + dx])] }
                } else {
                    for x in inside { row[x] = table[Int(source[x + dx])] }
                }
                (row + inside.upperBound).update(repeating: padding, count: width - inside.upperBound)
            }
            for y in erasedRows {
                (out + (c * height + y) * width + erasedColumns.lowerBound).update(repeating: 0, count: erasedColumns.count)
            }
        }
    }
}

extension Dataset {
    /// Writes sample `i`'s input as `draw` transforms it.
    package func augmentSample(_ i: Int, _ draw: AugmentationDraw, into out: UnsafeMutablePointer<Float>) {
        let size = sampleSize
        pixels.withUnsafeBufferPointer { p in
            pixelValues.withUnsafeBufferPointer { values in
                draw.apply(values.baseAddress!, to: p.baseAddress! + i * size, shape: shape, into: out)
            }
        }
    }
}
