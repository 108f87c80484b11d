"""The libvirt/QEMU driver and its parts.

``connection`` is the only module that imports the ``libvirt`` binding; ``base`` holds the
domain lifecycle shared with the test driver, ``domain_lookup`` which domains are a driver's,
``driver`` the real-host driver, ``domain_xml`` the domain XML builder, ``disk`` the qemu-img
calls, ``probe`` the KVM-versus-TCG probe and ``payload`` the guest it runs.
"""
