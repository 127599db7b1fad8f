"""ament_python package: `colcon build` and `pip install -e .` both work from these files."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "dmo_ros"

# ROS executables (`ros2 run dmo_ros <name>`): one thin node module each.
NODES = [
    "flexiv_driver",
    "go2_driver",
    "camera",
    "teleop",
    "auto_play",
    "intent_button",
    "viewer",
    "recorder",
    "bag_replay",
    "trainer",
    "policy",
]

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    package_data={PACKAGE: ["sim/assets/*"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        (f"share/{PACKAGE}/rviz", glob("rviz/*.rviz")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="dmo_ros developers",
    maintainer_email="dmo_ros@example.com",
    description="World-model policy learning from play data on ROS 2 (DMO-SAPO).",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [f"{n} = {PACKAGE}.nodes.{n}:main" for n in NODES]
        + [f"dmo-ros = {PACKAGE}.cli:main"],
    },
)
