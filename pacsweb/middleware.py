"""Response headers that every page gets."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

# pacsweb's own pages load scripts and images from this server only, and run no inline scripts;
# inline style attributes are allowed (they cannot run code).
PAGES_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)
# OHIF's index.html has inline scripts, its codecs are WebAssembly, and it renders thumbnails and
# runs workers from blob: URLs.
VIEWER_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' 'wasm-unsafe-eval' blob:; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self' blob: data:; "
    "worker-src 'self' blob:; font-src 'self' data:; object-src 'none'; base-uri 'self'; "
    "frame-ancestors 'self'"
)


def content_security_policy(get_response: Callable[[HttpRequest], HttpResponse]):
    def middleware(request: HttpRequest) -> HttpResponse:
        response = get_response(request)
        if "Content-Security-Policy" not in response:
            viewer = request.path.startswith("/ohif/")
            response["Content-Security-Policy"] = VIEWER_POLICY if viewer else PAGES_POLICY
        return response

    return middleware
