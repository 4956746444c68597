/// Which random transforms each training sample gets as its batch is formed (never in
/// evaluation), in torchvision's order: `RandomCrop(padding: cropPadding)`, then
/// `RandomHorizontalFlip()`, then — after scaling and normalisation — `RandomErasing()` with
/// its defaults. Every draw is a counter-based function of (seed, epoch, the sample's index in
/// the training set) (`AugmentationDraw`), so a sample is transformed alike on any rank,
/// thread or chunk (docs/architecture.md §2.1).
///
/// Written on the command line as a comma-separated list: `crop4,flip,erase`, or `none`.
public struct Augmentation: Codable, Sendable, Equatable {
    /// Zero padding P on every side before a random crop back to the image's size (0: no crop).
    public var cropPadding = 0
    /// Mirror left–right with probability ½ (off unless asked for: mirrored digits are not digits).
    public var flip = false
    /// torchvision's `RandomErasing()`: with probability `eraseProbability`, a rectangle of
    /// `eraseScale` of the area and aspect ratio in `eraseRatio` set to 0 in every channel.
    public var erase = false

    /// torchvision's `RandomErasing` defaults (p, scale, ratio; value 0).
    public static let eraseProbability: Float = 0.5
    public static let eraseScale = (low: 0.02, high: 0.33)
    public static let eraseRatio = (low: 0.3, high: 3.3)
    /// RandomErasing gives up after this many rectangles that do not fit the image.
    public static let eraseAttempts = 10
    /// The largest crop padding the flag accepts; the image must also be larger than it.
    public static let maximumCropPadding = 64

    public init() {}

    public var isEnabled: Bool { cropPadding > 0 || flip || erase }

    /// Parses `none` or a list such as `crop4,flip,erase`; the error names the bad item.
    public init(_ text: String) throws {
        guard text != "none" else { return }
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            switch item {
            case "flip" where !flip: flip = true
            case "erase" where !erase: erase = true
            case _ where item.hasPrefix("crop") && cropPadding == 0:
                guard let padding = Int(item.dropFirst(4)), (1...Augmentation.maximumCropPadding).contains(padding) else {
                    throw UsageError("'\(item)' needs a padding of 1…\(Augmentation.maximumCropPadding) pixels, as in crop4")
                }
                cropPadding = padding
            default:
                throw UsageError("'\(item)' is not one of crop<P>, flip, erase (each at most once), or none; for example crop4,flip,erase")
            }
        }
    }

    /// The text `init(_:)` parses: `crop4,flip,erase`, or `none`.
    public var text: String {
        let items = (cropPadding > 0 ? ["crop\(cropPadding)"] : []) + (flip ? ["flip"] : []) + (erase ? ["erase"] : [])
        return items.isEmpty ? "none" : items.joined(separator: ",")
    }

    /// Fails unless every transform fits a C×H×W sample of `shape`.
    public func check(shape: [Int]) throws {
        guard isEnabled else { return }
        let (text, cropPadding) = (text, cropPadding)
        guard shape.count == 3 else {
            let sample = shape.map(String.init).joined(separator: "×")
            throw InvalidSetting { "\($0("data.augmentation")) \(text) needs images (channels×height×width), but the data's samples are \(sample)" }
        }
        guard cropPadding < min(shape[1], shape[2]) else {
            let (height, width) = (shape[1], shape[2])
            throw InvalidSetting { "\($0("data.augmentation")) crop\(cropPadding): the padding must be smaller than the \(height)×\(width) image" }
        }
    }
}

/// One setting, not three: `Hyperparameters.settings`, resume checks and the ranks' agreement
/// name it by its flag's text (`crop4,flip`).
extension Augmentation: CustomStringConvertible, CustomReflectable {
    public var description: String { text }
    public var customMirror: Mirror { Mirror(self, children: [:]) }
}
