"""The storage half of the hypervisor adapter: how one host's agent finds and writes into
another host's instances directory through that host's libvirt, and nothing else.

A part of ``connection`` kept apart: it calls the libvirt connection's handle
(:meth:`~kubenova_agent.virt.libvirt.connection.Connection.handle`) under
:func:`~kubenova_agent.virt.libvirt.connection.translated`, so errors arrive as
``HypervisorError`` as everywhere else, and it does not import libvirt itself.

- A host that can be a migration's destination keeps a persistent, autostarted ``dir`` pool
  on its instances directory (:func:`ensure_directory_pool`); other hosts read its path
  (:func:`pool_path`).
- A file is copied there as a storage volume upload into a transient pool made on the
  instance's directory for the while (:func:`upload`): libvirt's stream carries the bytes over
  the same connection, whatever transport its URI names (a unix socket, TLS, SSH).
"""

from __future__ import annotations

import contextlib
import os
import xml.etree.ElementTree as ET

from kubenova_agent import exceptions
from kubenova_agent.virt.libvirt import connection

#: How much of a file one stream write carries.
_CHUNK = 1 << 20


def pool_path(conn: connection.Connection, name: str) -> str | None:
    """The target directory of the storage pool ``name``; None when there is none."""
    try:
        with connection.translated():
            xml = conn.handle().storagePoolLookupByName(name).XMLDesc(0)
    except exceptions.HypervisorError as exc:
        if exc.code == connection.ERR_NO_STORAGE_POOL:
            return None
        raise
    return ET.fromstring(xml).findtext("target/path")


def ensure_directory_pool(conn: connection.Connection, name: str, path: str) -> None:
    """Define, start and autostart a ``dir`` pool ``name`` on ``path`` (made again when it
    names another path)."""
    if pool_path(conn, name) == path:
        return
    remove_pool(conn, name)
    with connection.translated():
        pool = conn.handle().storagePoolDefineXML(_dir_pool_xml(name, path), 0)
        pool.create(0)
        pool.setAutostart(1)


def remove_pool(conn: connection.Connection, name: str) -> None:
    """Stop and undefine the pool ``name``; its files stay. No such pool is fine."""
    try:
        with connection.translated():
            pool = conn.handle().storagePoolLookupByName(name)
            if pool.isActive():
                pool.destroy()
            if pool.isPersistent():
                pool.undefine()
    except exceptions.HypervisorError as exc:
        if exc.code != connection.ERR_NO_STORAGE_POOL:
            raise


def upload(
    conn: connection.Connection, source: str, directory: str, name: str, *, pool: str
) -> None:
    """Copy the local file ``source`` to ``directory/name`` on the connection's host, making
    the directory (mode 0711) when it is missing; an existing file is replaced. A transient
    pool called ``pool`` holds the directory for the while."""
    size = os.path.getsize(source)
    remove_pool(conn, pool)
    with connection.translated():
        handle = conn.handle().storagePoolCreateXML(
            _dir_pool_xml(pool, directory), connection.POOL_CREATE_WITH_BUILD
        )
    try:
        with contextlib.suppress(exceptions.HypervisorError), connection.translated():
            handle.storageVolLookupByName(name).delete(0)
        with connection.translated():
            volume = handle.createXML(_raw_volume_xml(name, size), 0)
            stream = conn.handle().newStream(0)
            volume.upload(stream, 0, size, 0)
            with open(source, "rb") as file:
                stream.sendAll(
                    lambda _stream, nbytes, _opaque: file.read(min(nbytes, _CHUNK)), None
                )
            stream.finish()
    finally:
        with contextlib.suppress(exceptions.HypervisorError), connection.translated():
            handle.destroy()


def _dir_pool_xml(name: str, path: str) -> str:
    pool = ET.Element("pool", type="dir")
    ET.SubElement(pool, "name").text = name
    target = ET.SubElement(pool, "target")
    ET.SubElement(target, "path").text = path
    ET.SubElement(ET.SubElement(target, "permissions"), "mode").text = "0711"
    return ET.tostring(pool, encoding="unicode")


def _raw_volume_xml(name: str, size: int) -> str:
    volume = ET.Element("volume")
    ET.SubElement(volume, "name").text = name
    ET.SubElement(volume, "capacity", unit="bytes").text = str(size)
    # Nothing allocated up front: the upload writes every byte.
    ET.SubElement(volume, "allocation", unit="bytes").text = "0"
    target = ET.SubElement(volume, "target")
    ET.SubElement(target, "format", type="raw")
    ET.SubElement(ET.SubElement(target, "permissions"), "mode").text = "0600"
    return ET.tostring(volume, encoding="unicode")
