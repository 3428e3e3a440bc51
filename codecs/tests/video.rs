//! Video codecs end to end: encode synthetic pictures, decode them back, compare.

use codecs::h264::{H264Decoder, H264Encoder};
use codecs::payload::h264::{H264Depacketizer, H264Packetizer};
use codecs::payload::vp8::{is_key_frame, Vp8Depacketizer, Vp8Packetizer};
use codecs::payload::PacketizerConfig;
use codecs::scale::{PixelFormat, Scaler};
use codecs::vp8::{Vp8Decoder, Vp8Encoder};
use codecs::{CodecError, EncodedFrame, EncoderSettings, I420Frame};

const W: usize = 320;
const H: usize = 240;

/// A diagonal luma gradient with chroma bands: detail that a broken codec would smear.
fn gradient(w: usize, h: usize, shift: usize) -> I420Frame {
    let mut f = I420Frame::solid(w, h, (0, 0, 0)).unwrap();
    let (y, u, v) = f.planes_mut();
    for r in 0..h {
        for c in 0..w {
            y[r * w + c] = (16 + (r + c + shift) * 219 / (w + h)) as u8;
        }
    }
    for r in 0..h / 2 {
        for c in 0..w / 2 {
            u[r * w / 2 + c] = (64 + r * 128 / (h / 2)) as u8;
            v[r * w / 2 + c] = (192 - c * 128 / (w / 2)) as u8;
        }
    }
    f
}

fn close(a: (f64, f64, f64), b: (u8, u8, u8), tol: f64) -> bool {
    (a.0 - f64::from(b.0)).abs() <= tol
        && (a.1 - f64::from(b.1)).abs() <= tol
        && (a.2 - f64::from(b.2)).abs() <= tol
}

/// True when an H.264 access unit holds an IDR slice (read from the bytes, not the encoder).
fn has_idr(au: &[u8]) -> bool {
    au.windows(4)
        .any(|w| w[..3] == [0, 0, 1] && w[3] & 0x1f == 5)
}

trait Codec {
    fn encode(&mut self, f: &I420Frame) -> Result<Option<EncodedFrame>, CodecError>;
    fn decode(&mut self, data: &[u8]) -> Result<Option<I420Frame>, CodecError>;
    fn request_keyframe(&mut self);
}

struct H264(H264Encoder, H264Decoder);
struct Vp8(Vp8Encoder, Vp8Decoder);

impl Codec for H264 {
    fn encode(&mut self, f: &I420Frame) -> Result<Option<EncodedFrame>, CodecError> {
        self.0.encode(f)
    }
    fn decode(&mut self, data: &[u8]) -> Result<Option<I420Frame>, CodecError> {
        self.1.decode(data)
    }
    fn request_keyframe(&mut self) {
        self.0.request_keyframe()
    }
}

impl Codec for Vp8 {
    fn encode(&mut self, f: &I420Frame) -> Result<Option<EncodedFrame>, CodecError> {
        self.0.encode(f)
    }
    fn decode(&mut self, data: &[u8]) -> Result<Option<I420Frame>, CodecError> {
        self.1.decode(data)
    }
    fn request_keyframe(&mut self) {
        self.0.request_keyframe()
    }
}

fn settings() -> EncoderSettings {
    EncoderSettings {
        bitrate_bps: 800_000,
        ..EncoderSettings::new(W, H)
    }
}

fn h264() -> H264 {
    H264(
        H264Encoder::new(settings()).unwrap(),
        H264Decoder::new().unwrap(),
    )
}

fn vp8() -> Vp8 {
    Vp8(
        Vp8Encoder::new(settings()).unwrap(),
        Vp8Decoder::new().unwrap(),
    )
}

/// Encodes `frames` pictures and decodes each; returns the last decoded one.
fn round_trip(c: &mut dyn Codec, pictures: &[I420Frame]) -> I420Frame {
    let mut last = None;
    for (i, p) in pictures.iter().enumerate() {
        let e = c.encode(p).unwrap().expect("a frame per picture");
        assert_eq!(e.keyframe, i == 0, "frame {i}");
        last = Some(c.decode(&e.data).unwrap().expect("a picture per frame"));
    }
    last.unwrap()
}

fn solid_colours(c: &mut dyn Codec) {
    // Red, green, blue, grey in BT.601 limited-range YUV.
    for yuv in [
        (81, 90, 240),
        (145, 54, 34),
        (41, 240, 110),
        (128, 128, 128),
    ] {
        let p = I420Frame::solid(W, H, yuv).unwrap();
        c.request_keyframe();
        let out = c.encode(&p).unwrap().unwrap();
        assert!(out.keyframe);
        let d = c.decode(&out.data).unwrap().unwrap();
        assert_eq!((d.width(), d.height()), (W, H));
        assert!(
            close(d.mean(), yuv, 2.0),
            "{yuv:?} came back as {:?}",
            d.mean()
        );
    }
}

#[test]
fn h264_solid_colours_come_back() {
    solid_colours(&mut h264());
}

#[test]
fn vp8_solid_colours_come_back() {
    solid_colours(&mut vp8());
}

#[test]
fn h264_gradient_keeps_its_detail() {
    let pictures: Vec<_> = (0..10).map(|i| gradient(W, H, i * 2)).collect();
    let out = round_trip(&mut h264(), &pictures);
    let psnr = out.psnr_y(&pictures[9]).unwrap();
    assert!(psnr > 32.0, "PSNR {psnr:.1} dB");
}

#[test]
fn vp8_gradient_keeps_its_detail() {
    let pictures: Vec<_> = (0..10).map(|i| gradient(W, H, i * 2)).collect();
    let out = round_trip(&mut vp8(), &pictures);
    let psnr = out.psnr_y(&pictures[9]).unwrap();
    assert!(psnr > 30.0, "PSNR {psnr:.1} dB");
}

#[test]
fn a_requested_keyframe_is_a_keyframe() {
    let mut c = h264();
    let mut v = vp8();
    for i in 0..8 {
        let p = gradient(W, H, i);
        if i == 5 {
            c.request_keyframe();
            v.request_keyframe();
        }
        let e = c.encode(&p).unwrap().unwrap();
        assert_eq!(e.keyframe, i == 0 || i == 5, "H.264 frame {i}");
        assert_eq!(has_idr(&e.data), e.keyframe, "H.264 frame {i} bytes");
        let e = v.encode(&p).unwrap().unwrap();
        assert_eq!(e.keyframe, i == 0 || i == 5, "VP8 frame {i}");
        assert_eq!(is_key_frame(&e.data), e.keyframe, "VP8 frame {i} bytes");
    }
}

#[test]
fn a_bitrate_change_keeps_encoding_from_a_keyframe() {
    let mut e = H264Encoder::new(settings()).unwrap();
    let mut d = H264Decoder::new().unwrap();
    for i in 0..3 {
        let out = e.encode(&gradient(W, H, i)).unwrap().unwrap();
        d.decode(&out.data).unwrap();
    }
    e.set_bitrate(300_000).unwrap();
    assert_eq!(e.settings().bitrate_bps, 300_000);
    let out = e.encode(&gradient(W, H, 5)).unwrap().unwrap();
    assert!(out.keyframe);
    assert!(d.decode(&out.data).unwrap().is_some());
    let mut v = Vp8Encoder::new(settings()).unwrap();
    v.encode(&gradient(W, H, 0)).unwrap();
    v.set_bitrate(300_000).unwrap();
    assert!(v.encode(&gradient(W, H, 1)).unwrap().unwrap().keyframe);
}

/// The whole sending and receiving chain: encode, packetize at a 1200-byte MTU,
/// depacketize, decode.
#[test]
fn through_rtp_and_back() {
    let cfg = PacketizerConfig {
        ssrc: 7,
        payload_type: 96,
        first_seq: 40_000,
        mtu: 1200,
    };
    let mut enc = H264Encoder::new(settings()).unwrap();
    let mut pack = H264Packetizer::new(cfg).unwrap();
    let mut depack = H264Depacketizer::new();
    let mut dec = H264Decoder::new().unwrap();
    let mut venc = Vp8Encoder::new(settings()).unwrap();
    let mut vpack = Vp8Packetizer::new(cfg, 77).unwrap();
    let mut vdepack = Vp8Depacketizer::new();
    let mut vdec = Vp8Decoder::new().unwrap();
    let mut pkts = Vec::new();
    for i in 0..5u32 {
        let p = gradient(W, H, i as usize * 3);
        pkts.clear();
        let e = enc.encode(&p).unwrap().unwrap();
        pack.packetize(&e.data, i * 3000, &mut pkts).unwrap();
        let mut frames = pkts.iter().filter_map(|k| depack.push_packet(k).unwrap());
        let f = frames.next().unwrap();
        assert_eq!(f.keyframe, i == 0);
        let out = dec.decode(&f.data).unwrap().unwrap();
        assert!(out.psnr_y(&p).unwrap() > 30.0);

        pkts.clear();
        let e = venc.encode(&p).unwrap().unwrap();
        vpack.packetize(&e.data, i * 3000, &mut pkts).unwrap();
        let f = pkts
            .iter()
            .filter_map(|k| vdepack.push_packet(k).unwrap())
            .next()
            .unwrap();
        let out = vdec.decode(&f.data).unwrap().unwrap();
        assert!(out.psnr_y(&p).unwrap() > 28.0);
    }
}

#[test]
fn scaling_keeps_the_mean_colour() {
    let mut s = Scaler::new((640, 360), (320, 180)).unwrap();
    for yuv in [(81, 90, 240), (145, 54, 34), (200, 100, 150)] {
        let out = s.scale(&I420Frame::solid(640, 360, yuv).unwrap()).unwrap();
        assert_eq!((out.width(), out.height()), (320, 180));
        assert!(close(out.mean(), yuv, 1.0), "{yuv:?} -> {:?}", out.mean());
    }
    let g = gradient(640, 360, 0);
    let out = s.scale(&g).unwrap();
    let (a, b) = (g.mean(), out.mean());
    assert!((a.0 - b.0).abs() < 1.5 && (a.1 - b.1).abs() < 1.5 && (a.2 - b.2).abs() < 1.5);
    // Each quadrant keeps its own mean too (nothing shifted).
    assert!((g.mean_rect(0, 0, 320, 180).0 - out.mean_rect(0, 0, 160, 90).0).abs() < 1.5);
    // A scaler is for one input size.
    assert!(matches!(
        s.scale(&I420Frame::solid(320, 240, (0, 0, 0)).unwrap()),
        Err(CodecError::Dimensions { .. })
    ));
}

#[test]
fn rgb_converts_to_i420_and_back() {
    let (w, h) = (64, 48);
    let rgb: Vec<u8> = std::iter::repeat_n([255u8, 0, 0], w * h)
        .flatten()
        .collect();
    let mut to = Scaler::convert((PixelFormat::Rgb24, w, h), (PixelFormat::I420, w, h)).unwrap();
    let yuv = to.convert_bytes(&rgb).unwrap();
    let f = I420Frame::from_vec(w, h, yuv).unwrap();
    assert!(close(f.mean(), (81, 90, 240), 2.0), "{:?}", f.mean());
    let mut back = Scaler::convert((PixelFormat::I420, w, h), (PixelFormat::Rgb24, w, h)).unwrap();
    let rgb2 = back.convert_bytes(f.data()).unwrap();
    assert_eq!(rgb2.len(), rgb.len());
    assert!(rgb2.chunks(3).all(|p| p[0] > 245 && p[1] < 10 && p[2] < 10));
    assert!(matches!(
        to.convert_bytes(&rgb[1..]),
        Err(CodecError::FrameSize { .. })
    ));
}

#[test]
fn bad_sizes_and_bad_input_are_errors() {
    for (w, h) in [(0, 2), (3, 2), (2, 5), (10_000, 2)] {
        assert!(matches!(
            I420Frame::solid(w, h, (0, 0, 0)),
            Err(CodecError::Dimensions { .. })
        ));
    }
    assert!(I420Frame::from_vec(4, 4, vec![0; 23]).is_err());
    assert!(H264Encoder::new(EncoderSettings::new(321, 240)).is_err());
    assert!(Vp8Encoder::new(EncoderSettings {
        framerate: 0,
        ..EncoderSettings::new(W, H)
    })
    .is_err());
    let mut e = H264Encoder::new(settings()).unwrap();
    assert!(e
        .encode(&I420Frame::solid(160, 120, (0, 0, 0)).unwrap())
        .is_err());
    // Garbage in a decoder is an error or nothing, never a panic.
    let mut d = H264Decoder::new().unwrap();
    let mut v = Vp8Decoder::new().unwrap();
    for junk in [&[0u8, 0, 0, 1, 0x65, 1, 2, 3][..], &[0xff; 100], &[1, 2, 3]] {
        let _ = d.decode(junk);
        let _ = v.decode(junk);
    }
    assert!(v.decode(&[]).is_err());
}
