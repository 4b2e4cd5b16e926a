"""OpenStack drivers over openstacksdk.

- :class:`hastack.drivers.openstack.compute.NovaCompute`: the compute port (Nova, Placement,
  Glance), read as raw JSON.
- :func:`hastack.drivers.openstack.connection.connect`: a connection from one clouds.yaml
  entry, ignoring ``OS_*`` variables.

Both translate sdk and keystoneauth errors into hastack's at their edge.
"""
