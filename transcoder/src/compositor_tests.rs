use super::*;

use codecs::h264::H264Decoder;

/// BT.601 limited-range colours, far apart: red, green, blue, yellow.
const COLOURS: [(u8, u8, u8); 4] = [(81, 90, 240), (145, 54, 34), (41, 240, 110), (210, 16, 146)];

fn pool() -> Arc<rayon::ThreadPool> {
    Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("a pool"),
    )
}

/// A sender's camera: 640x360 of one colour, H.264 or VP8.
struct Camera {
    id: u32,
    picture: I420Frame,
    enc: Encoder,
}

impl Camera {
    fn new(id: u32, codec: VideoCodec, colour: (u8, u8, u8)) -> Camera {
        let mut s = EncoderSettings::new(640, 360);
        s.bitrate_bps = 500_000;
        Camera {
            id,
            picture: I420Frame::solid(640, 360, colour).unwrap(),
            enc: Encoder::new(codec, s).unwrap(),
        }
    }

    /// Its next frame into the compositor.
    fn send(&mut self, c: &mut Compositor) {
        if let Some(f) = self.enc.encode(&self.picture).unwrap() {
            c.push(self.id, f.data, f.keyframe, Instant::now()).unwrap();
        }
    }
}

/// `n` H.264 cameras (ids 1..=n, the first colours) added to `c` as senders.
fn h264_cameras(c: &mut Compositor, n: usize) -> Vec<Camera> {
    (0..n)
        .map(|i| {
            let cam = Camera::new(i as u32 + 1, VideoCodec::H264, COLOURS[i]);
            c.add_sender(cam.id, VideoCodec::H264).unwrap();
            cam
        })
        .collect()
}

fn composite(layout: Layout) -> Compositor {
    let mut s = EncoderSettings::new(1280, 720);
    s.bitrate_bps = 1_500_000;
    Compositor::new(VideoCodec::H264, s, layout, pool()).unwrap()
}

/// Runs `frames` frame times: every camera sends, the compositor makes its frame, and a
/// receiver decodes what it encoded. Returns the receiver's last picture.
fn run(
    c: &mut Compositor,
    cams: &mut [Camera],
    rx: &mut H264Decoder,
    now: &mut Instant,
    frames: usize,
) -> Option<I420Frame> {
    let mut last = None;
    for _ in 0..frames {
        for cam in cams.iter_mut() {
            cam.send(c);
        }
        if let Some(f) = c.poll(*now).unwrap() {
            if let Some(p) = rx.decode(&f.data).unwrap() {
                last = Some(p);
            }
        }
        *now += Duration::from_millis(33);
    }
    last
}

fn close(got: (f64, f64, f64), want: (u8, u8, u8)) -> bool {
    (got.0 - f64::from(want.0)).abs() < 12.0
        && (got.1 - f64::from(want.1)).abs() < 12.0
        && (got.2 - f64::from(want.2)).abs() < 12.0
}

#[test]
fn four_senders_fill_the_quadrants_of_one_encoded_composite() {
    let mut c = composite(Layout::Grid);
    let mut cams = h264_cameras(&mut c, 4);
    assert_eq!(
        c.keyframe_requests(),
        vec![1, 2, 3, 4],
        "new senders are asked"
    );
    assert!(c.keyframe_requests().is_empty(), "once");
    let mut rx = H264Decoder::new().unwrap();
    let mut now = Instant::now();
    let p = run(&mut c, &mut cams, &mut rx, &mut now, 30).expect("decoded");
    assert_eq!((p.width(), p.height()), (1280, 720));
    // Each quadrant's middle has its sender's colour.
    for (i, &(x, y)) in [(0, 0), (640, 0), (0, 360), (640, 360)].iter().enumerate() {
        let m = p.mean_rect(x + 160, y + 90, 320, 180);
        assert!(close(m, COLOURS[i]), "quadrant {i}: {m:?}");
    }
    assert!(c.stats.frames >= 29, "{:?}", c.stats);
    assert_eq!(c.stats.decode_errors, 0);
}

#[test]
fn the_speaker_takes_the_large_tile_and_a_silent_sender_keeps_its_picture() {
    let mut c = composite(Layout::Speaker);
    let mut cams = h264_cameras(&mut c, 3);
    c.set_speaker(Some(2));
    let mut rx = H264Decoder::new().unwrap();
    let mut now = Instant::now();
    let big = |p: &I420Frame| p.mean_rect(320, 135, 640, 270);
    let p = run(&mut c, &mut cams, &mut rx, &mut now, 15).unwrap();
    assert!(close(big(&p), COLOURS[1]), "speaker 2: {:?}", big(&p));
    // Another talks: its tile is the large one at the next frame. Sender 1 goes quiet
    // and keeps its last picture, now as a thumbnail.
    c.set_speaker(Some(3));
    let mut talking: Vec<Camera> = cams.drain(1..).collect();
    let reused = c.stats.reused;
    let p = run(&mut c, &mut talking, &mut rx, &mut now, 2).unwrap();
    assert!(close(big(&p), COLOURS[2]), "speaker 3: {:?}", big(&p));
    assert!(c.stats.reused > reused, "the quiet sender's picture reused");
    let thumbs: Vec<_> = (0..2)
        .map(|i| p.mean_rect(i * 320 + 40, 560, 240, 120))
        .collect();
    assert!(
        thumbs.iter().any(|&m| close(m, COLOURS[0])),
        "the quiet sender's thumbnail: {thumbs:?}"
    );
}

#[test]
fn a_vp8_sender_is_transcoded_into_the_h264_composite() {
    let mut c = composite(Layout::Grid);
    let mut cams = vec![Camera::new(7, VideoCodec::Vp8, COLOURS[2])];
    c.add_sender(7, VideoCodec::Vp8).unwrap();
    let mut rx = H264Decoder::new().unwrap();
    let mut now = Instant::now();
    let p = run(&mut c, &mut cams, &mut rx, &mut now, 10).unwrap();
    assert!(close(p.mean(), COLOURS[2]), "{:?}", p.mean());
}

#[test]
fn units_before_a_keyframe_or_past_the_queue_wait_for_the_next_keyframe() {
    let mut c = composite(Layout::Grid);
    c.add_sender(1, VideoCodec::H264).unwrap();
    let _ = c.keyframe_requests();
    // Delta units before any keyframe go nowhere.
    c.push(1, vec![0, 0, 0, 1, 0x41, 0x9a], false, Instant::now())
        .unwrap();
    assert_eq!(c.stats.dropped_units, 1);
    // A sender that runs far ahead of the frame clock overflows its queue: dropped, and
    // a keyframe is asked for.
    c.push(1, vec![0, 0, 0, 1, 0x65, 0x88], true, Instant::now())
        .unwrap();
    for _ in 0..QUEUE_MAX {
        c.push(1, vec![0, 0, 0, 1, 0x41, 0x9a], false, Instant::now())
            .unwrap();
    }
    assert_eq!(c.keyframe_requests(), vec![1]);
    assert_eq!(c.stats.dropped_units, 1 + QUEUE_MAX as u64 + 1);
    assert_eq!(
        c.push(9, vec![1], true, Instant::now()),
        Err(CompositeError::UnknownSender(9))
    );
    // Garbage that claims to be a keyframe: counted, never a panic, and asked again.
    c.push(1, vec![0xde, 0xad, 0xbe, 0xef], true, Instant::now())
        .unwrap();
    let _ = c.poll(Instant::now()).unwrap();
    assert_eq!(
        c.keyframe_requests().len(),
        usize::from(c.stats.decode_errors > 0)
    );
}

#[test]
fn a_frame_names_when_its_new_pictures_arrived() {
    let mut c = composite(Layout::Grid);
    let mut cams = h264_cameras(&mut c, 2);
    let t0 = Instant::now();
    // Both cameras' keyframes, pushed at t0 (the cameras stamp `Instant::now()`).
    for cam in &mut cams {
        cam.send(&mut c);
    }
    let at = t0 + Duration::from_millis(40);
    assert!(c.poll(at).unwrap().is_some(), "a frame");
    let inputs = c.frame_inputs().to_vec();
    assert_eq!(inputs.len(), 2, "one picture from each");
    assert!(inputs.iter().all(|&t| t >= t0 && t <= Instant::now()));
    // The next frame has nothing new: its pictures are reused, no latency to count.
    assert!(c.poll(at + Duration::from_millis(34)).unwrap().is_some());
    assert!(c.frame_inputs().is_empty(), "{:?}", c.frame_inputs());
}
