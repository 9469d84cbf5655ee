"""Package metadata comes from settings.ini (nbdev's convention), so there is one place to change it."""
from configparser import ConfigParser
import setuptools

cfg = ConfigParser(delimiters=['='])
cfg.read('settings.ini', encoding='utf-8')
cfg = cfg['DEFAULT']

def _reqs(key): return cfg.get(key, '').split()

setuptools.setup(
    name=cfg['lib_name'], version=cfg['version'], description=cfg['description'],
    author=cfg['author'], author_email=cfg['author_email'], license=cfg['license'],
    url=cfg['git_url'], keywords=cfg['keywords'].split(),
    packages=setuptools.find_packages(include=[cfg['lib_path'], cfg['lib_path'] + '.*']),
    include_package_data=True, package_data={cfg['lib_path']: ['*.json']},
    install_requires=_reqs('requirements'), extras_require={'dev': _reqs('dev_requirements')},
    python_requires='>=' + cfg['min_python'], zip_safe=False,
    entry_points={'console_scripts': cfg.get('console_scripts', '').split(),
                  'nbdev': [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"]},
)
