import pytest

from kubenova.scheduler.filters.image_properties_filter import ImagePropertiesFilter
from tests.unit.scheduler.conftest import make_host, make_spec


def kvm_host(**overrides):
    values = {"cpu_arch": "x86_64", "hypervisor_type": "QEMU", "virt_type": "kvm"}
    values.update(overrides)
    return make_host(**values)


def test_image_without_properties_passes_a_host_that_reports_nothing(context):
    assert ImagePropertiesFilter().host_passes(make_host(), make_spec(), context).passed


@pytest.mark.parametrize("arch", ["x86_64", "X86_64", "amd64"])
def test_image_architecture_matches_the_host_cpu_whatever_its_spelling(context, arch):
    spec = make_spec(image_architecture=arch)
    assert ImagePropertiesFilter().host_passes(kvm_host(), spec, context).passed


def test_image_for_another_architecture_is_rejected_as_image_properties(context):
    spec = make_spec(image_architecture="aarch64")
    result = ImagePropertiesFilter().host_passes(kvm_host(), spec, context)
    assert (result.passed, result.reason) == (False, "image properties")


def test_debian_arm64_is_the_same_architecture_as_aarch64(context):
    spec = make_spec(image_architecture="arm64")
    assert ImagePropertiesFilter().host_passes(kvm_host(cpu_arch="aarch64"), spec, context).passed


def test_image_architecture_is_rejected_by_a_host_that_does_not_report_one(context):
    spec = make_spec(image_architecture="x86_64")
    assert not ImagePropertiesFilter().host_passes(make_host(), spec, context).passed


@pytest.mark.parametrize("image_hv_type", ["qemu", "QEMU", "kvm", "KVM"])
@pytest.mark.parametrize("virt_type", ["kvm", "qemu"])
def test_qemu_and_kvm_images_run_on_any_qemu_host(context, image_hv_type, virt_type):
    spec = make_spec(image_hypervisor_type=image_hv_type)
    host = kvm_host(virt_type=virt_type)
    assert ImagePropertiesFilter().host_passes(host, spec, context).passed


def test_image_for_another_hypervisor_type_is_rejected(context):
    spec = make_spec(image_hypervisor_type="xen")
    result = ImagePropertiesFilter().host_passes(kvm_host(), spec, context)
    assert (result.passed, result.reason) == (False, "image properties")


def test_hypervisor_type_is_matched_against_virt_type_when_the_hypervisor_is_unknown(context):
    host = make_host(hypervisor_type=None, virt_type="kvm")
    spec = make_spec(image_hypervisor_type="qemu")
    assert ImagePropertiesFilter().host_passes(host, spec, context).passed


def test_image_hypervisor_type_is_rejected_by_a_host_that_does_not_report_one(context):
    spec = make_spec(image_hypervisor_type="qemu")
    assert not ImagePropertiesFilter().host_passes(make_host(), spec, context).passed


def test_both_properties_must_match(context):
    spec = make_spec(image_architecture="x86_64", image_hypervisor_type="xen")
    assert not ImagePropertiesFilter().host_passes(kvm_host(), spec, context).passed
