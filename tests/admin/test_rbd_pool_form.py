"""An RBD pool added through the console's pool form, on the throw-away test Ceph (tests/drivers/ceph.py):
the form builds the location from the Ceph settings and the pool service validates it by connecting,
as `add_pool --type rbd` does; the pool is created and a volume can be made in it. A Ceph pool that
does not exist is a form error and no row."""

from __future__ import annotations

from django.urls import reverse

from tests.admin.storage import new_volume
from tests.admin.test_pools_admin import pool_form
from tests.drivers.conftest import ceph_cluster, rbd_namespace  # noqa: F401 (fixtures)
from volumes.drivers import get_driver
from volumes.drivers.rbd import RbdDriver
from volumes.models import Pool, PoolMount


def rbd_form(topology, **overrides) -> dict:
    return pool_form(topology, name="ceph1", pool_type="rbd", driver="", path="", capacity="1T", **overrides)


def test_rbd_pool_through_the_form_is_created_and_usable(
    admin_client,
    topology,
    ceph_cluster,  # noqa: F811
    rbd_namespace,  # noqa: F811
):
    location = rbd_namespace("form")
    ceph_pool, namespace = location.split(":", 1)[0].split("/")
    response = admin_client.post(
        reverse("admin:volumes_pool_add"),
        rbd_form(topology, ceph_pool=ceph_pool, ceph_namespace=namespace, ceph_conf=ceph_cluster.conf),
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    pool = Pool.objects.get(name="ceph1")
    assert (pool.pool_type, pool.driver, pool.path, pool.capacity) == ("rbd", "rbd", location, 1 << 40)
    assert list(PoolMount.objects.filter(pool=pool).values_list("host", "mount_path")) == [
        (topology["host"].pk, location)
    ]
    driver = get_driver(pool.driver, pool.path, pool.uuid)
    assert isinstance(driver, RbdDriver)
    driver.check_available()  # the identity marker the service wrote is this pool's

    # Usable: a volume created in it through the volume service is an RBD image of its size.
    volume = new_volume(topology, pool=pool, name="on-ceph", capacity=8 << 20, data=False)
    assert driver.exists(volume.image_name)
    assert driver.info(volume.image_name).virtual_size == 8 << 20

    # Its page shows the location and the Ceph settings are not asked for again.
    html = admin_client.get(reverse("admin:volumes_pool_change", args=[pool.pk])).content.decode()
    assert location in html and 'name="ceph_pool"' not in html


def test_rbd_pool_form_refuses_a_ceph_pool_it_cannot_reach(
    admin_client,
    topology,
    ceph_cluster,  # noqa: F811
    tmp_path,
):
    url = reverse("admin:volumes_pool_add")
    response = admin_client.post(url, rbd_form(topology, ceph_pool="nosuchpool", ceph_conf=ceph_cluster.conf))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "cannot list the RBD pool" in " ".join(errors["__all__"])
    assert not Pool.objects.filter(name="ceph1").exists()

    # A conf file that is not there, and settings rbd_location refuses, on their own fields.
    response = admin_client.post(
        url, rbd_form(topology, ceph_pool="rbd", ceph_conf=str(tmp_path / "none.conf"))
    )
    assert "does not exist" in " ".join(response.context["adminform"].form.errors["__all__"])
    response = admin_client.post(url, rbd_form(topology, ceph_pool="", ceph_conf=ceph_cluster.conf))
    assert response.context["adminform"].form.errors["ceph_pool"] == [
        "invalid parameter ceph_pool: is required"
    ]
    response = admin_client.post(url, rbd_form(topology, ceph_pool="rbd", ceph_conf="relative.conf"))
    assert "must be an absolute path" in response.context["adminform"].form.errors["ceph_conf"][0]
    # A directory pool type still needs its path.
    response = admin_client.post(url, pool_form(topology, name="ceph1", pool_type="disk", path=""))
    assert "path" in response.context["adminform"].form.errors
    assert not Pool.objects.filter(name="ceph1").exists()
