"""FileStyle: the writer lays files out and colour-describes them as asked, and learn_file_style reads that back from
a file, which is how the nodes learn what their host's Save Video does (tests/host/test_host_file_style.py asks
each real ComfyUI release)."""

import av
import numpy as np
import pytest

from streamvae import EncodeSettings
from streamvae.convert import RGB24, YUV420P, layout_for
from streamvae.file_style import ColourTags, FileStyle, learn_file_style
from streamvae.writer import VideoWriter

from support.videos import smooth_frames

BT709_SRGB = ColourTags(primaries=1, transfer=13, matrix=1, range=1)  # what the newest Save Video tags
STYLES = {
    "v0.3.64 layout": FileStyle(),
    "faststart": FileStyle(("use_metadata_tags", "faststart")),
    "BT.709 tagged": FileStyle(("use_metadata_tags", "faststart"), "BT.709", BT709_SRGB),
}


def write(path, frames, style, metadata=None, **settings):
    settings = {"fps": 16, "crf": 18, "encoder": "software", "parallel": 1, **settings}
    with VideoWriter(path, EncodeSettings(style=style, **settings), frames.shape[2], frames.shape[1],
                     metadata=metadata, frames=len(frames)) as writer:
        writer.write(frames)
        return writer.finish()


@pytest.mark.parametrize("name", STYLES)
def test_a_file_written_in_a_style_is_read_back_as_that_style(tmp_path, name):
    style = STYLES[name]
    assert learn_file_style(lambda path, frames, metadata: write(path, frames, style, metadata)) == style


def test_faststart_puts_the_index_first_and_keeps_the_workflow(tmp_path):
    frames = smooth_frames(5, 48, 64)
    plain = write(tmp_path / "plain.mp4", frames, STYLES["v0.3.64 layout"], {"prompt": {"1": {}}})
    fast = write(tmp_path / "fast.mp4", frames, STYLES["faststart"], {"prompt": {"1": {}}})
    assert plain.read_bytes().find(b"moov") > plain.read_bytes().find(b"mdat")
    assert fast.read_bytes().find(b"moov") < fast.read_bytes().find(b"mdat")
    with av.open(str(fast)) as container:
        assert container.metadata["prompt"] == '{"1": {}}'
        decoded = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])
    assert decoded.shape == frames.shape


def test_bt709_files_are_converted_and_tagged_so_players_get_the_colours_back(tmp_path):
    """The matrix the frames are converted with and the one the file names must agree: a decoder that follows
    the tags recovers the colours; read with BT.601 instead, saturated colours shift visibly."""
    frames = smooth_frames(3, 64, 64)
    path = write(tmp_path / "x.mp4", frames, STYLES["BT.709 tagged"], crf=0, pix_fmt="yuv444p")
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.color_primaries, stream.codec_context.colorspace) == (1, 1)
        frame = next(container.decode(stream))
        as_tagged = frame.to_ndarray(format="rgb24").astype(int)
        as_bt601 = frame.reformat(format="rgb24", src_colorspace=5).to_ndarray().astype(int)
    assert np.abs(as_tagged - frames[0]).max() <= 2
    assert np.abs(as_bt601 - frames[0]).max() >= 8


def test_rgb_files_keep_the_decoders_bytes_whatever_the_style(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    path = write(tmp_path / "x.mkv", frames, STYLES["BT.709 tagged"], container="mkv", codec="ffv1", pix_fmt="bgr0")
    with av.open(str(path)) as container:
        decoded = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])
    np.testing.assert_array_equal(decoded, frames)


def test_fast_mode_leaves_a_bt709_conversion_to_the_cpu(caplog):
    assert layout_for("fast", "yuv420p", "BT.601") is YUV420P
    assert layout_for("fast", "yuv420p", "BT.709") is RGB24
    assert "BT.601 only" in caplog.text
