"""TPU jobs end to end without a TPU: the resolver's arguments, the machines, the image kind."""

import pytest
import tensorflow as tf

from deploy import image_kind, machines, specs
from trainer import distribution

IMAGE = "us-central1-docker.pkg.dev/my-proj/face-age/face-age-trainer"


@pytest.mark.parametrize("flag, kwargs", [
    ("local", {"tpu": "local"}),  # a TPU VM: every Vertex AI TPU job
    (" local ", {"tpu": "local"}),
    ("my-tpu", {"tpu": "my-tpu"}),  # a TPU node's name, looked up through the Cloud TPU API
    ("grpc://10.0.0.2:8470", {"tpu": "grpc://10.0.0.2:8470"}),
])
def test_resolver_arguments_for_each_tpu_flag(flag, kwargs):
    assert distribution.tpu_resolver_kwargs(flag) == kwargs


@pytest.mark.parametrize("flag", ["local", "grpc://10.0.0.2:8470"])
def test_the_real_resolver_takes_them(flag):
    """TensorFlow's own TPUClusterResolver accepts what we pass (a name would need the Cloud TPU
    API, so it is checked by its arguments above); tpu='' is what it refuses."""
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
        **distribution.tpu_resolver_kwargs(flag))
    assert resolver.master() == ("" if flag == "local" else flag)
    with pytest.raises(ValueError, match="Please provide a TPU Name"):
        tf.distribute.cluster_resolver.TPUClusterResolver(tpu="")


@pytest.mark.parametrize("flag, message", [("", "--tpu is empty: pass --tpu=local"),
                                           ("grpc://", "has no host")])
def test_bad_tpu_flags(flag, message):
    with pytest.raises(ValueError, match=message):
        distribution.tpu_resolver_kwargs(flag)


def test_a_gpu_image_refuses_the_tpu_strategy_at_start():
    env = {distribution.IMAGE_ACCELERATOR_ENV: "gpu"}
    with pytest.raises(ValueError, match="built for gpu .* --build-arg ACCELERATOR=tpu"):
        distribution.check_image_accelerator("tpu", env)
    distribution.check_image_accelerator("tpu", {distribution.IMAGE_ACCELERATOR_ENV: "tpu"})
    distribution.check_image_accelerator("tpu", {})  # outside the image: nothing to say


@pytest.mark.parametrize("uri, flag, kind", [
    (IMAGE + ":v1", "", "gpu"), (IMAGE + ":v1-gpu", "", "gpu"), (IMAGE + ":v1-tpu", "", "tpu"),
    (IMAGE + ":v1-gpu-rs", "", "gpu-rs"), (IMAGE + ":tpu", "", "tpu"),
    (IMAGE + "@sha256:" + "a" * 64, "", "gpu"), ("localhost:5000/t:v1", "", "gpu"),
    ("localhost:5000/t-tpu", "", "gpu"), (IMAGE + ":v1", "tpu", "tpu"),
    (IMAGE + ":v1-tpu", "gpu-rs", "gpu-rs"),
])
def test_image_kind_from_the_flag_else_the_tag(uri, flag, kind):
    assert image_kind.kind_of(uri, flag) == kind


def _job(image_uri, **overrides):
    kwargs = dict(project="my-proj", region="us-central1", display_name="run1",
                  image_uri=image_uri, machine_type="ct5lp-hightpu-4t", staging_bucket="gs://b1b",
                  trainer_flags=["--data_dir=gs://b1b/records", "--batch_size=64"])
    return specs.make_job(**{**kwargs, **overrides})


@pytest.mark.parametrize("image, overrides, message", [
    (IMAGE + ":v1", {}, "--machine_type=ct5lp-hightpu-4t is a TPU, but --image_uri="),
    (IMAGE + ":v1-gpu-rs", dict(machine_type="cloud-tpu", accelerator_type="TPU_V3",
                                accelerator_count=8), "_VARIANT=tpu"),
    (IMAGE + ":v1-tpu", dict(machine_type="g2-standard-8"), "has GPUs, but --image_uri="),
    (IMAGE + ":v1", dict(machine_type="g2-standard-24", replica_count=2,
                         reduction_server_count=1),
     "--reduction_server_count=1 needs the Reduction Server NCCL plugin"),
    (IMAGE + ":v1-tpu", dict(image_kind_flag="gpu"), "is a gpu image"),
    (IMAGE + ":v1", dict(image_kind_flag="cpu"), "--image_kind=cpu: expected one of"),
])
def test_the_submitter_refuses_an_image_the_machines_cannot_use(image, overrides, message):
    with pytest.raises(ValueError) as info:
        _job(image, **overrides)
    assert message in str(info.value)


def test_the_right_images_are_accepted():
    assert _job(IMAGE + ":v1-tpu").image_kind == "tpu"
    assert _job(IMAGE + ":v1", image_kind_flag="tpu").trainer_args[-1] == "--tpu=local"
    rs = _job(IMAGE + ":v1-gpu-rs", machine_type="g2-standard-24", replica_count=2,
              reduction_server_count=1)
    assert len(specs.worker_pool_specs(rs)) == 3
    assert _job(IMAGE + ":v1-gpu-rs", machine_type="g2-standard-8").image_kind == "gpu-rs"


@pytest.mark.parametrize("machine", ["ct6e-standard-1t", "ct6e-standard-4t", "ct6e-standard-8t"])
def test_tpu_v6e_is_refused_for_want_of_tensorflow(machine):
    with pytest.raises(ValueError, match="TPU v6e, for which Vertex AI lists no TensorFlow "
                                         "support .* use ct5lp-hightpu"):
        machines.resolve(machine)
