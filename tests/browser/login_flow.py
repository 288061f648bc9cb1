"""Drives headless Chromium through browser mode of a running gateway.

Usage: login_flow.py BASE_URL [SCREENSHOT.png]

BASE_URL serves a browser route at /app whose upstream answers an HTML page naming the
X-Identity it received. The script signs in through the login form, reloads, signs out,
and checks that a return URL off the site is refused; it exits non-zero (with the step
that failed) on any unexpected page. With SCREENSHOT it also saves the login page.
"""

import sys
from urllib.parse import urlsplit

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--disable-gpu", "--window-size=900,700", "--no-first-run",
                "--disable-background-networking", "--disable-component-update"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def check(cond, step, driver):
    if not cond:
        sys.exit(f"FAILED at {step}: now at {driver.current_url}\n{driver.page_source[:2000]}")


def wait_path(driver, path, step):
    try:
        WebDriverWait(driver, 10).until(lambda d: urlsplit(d.current_url).path == path)
    except Exception:
        check(False, step, driver)


def sign_in(driver, username, password):
    WebDriverWait(driver, 10).until(ec.presence_of_element_located((By.ID, "username")))
    driver.find_element(By.ID, "username").send_keys(username)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()


def main():
    base = sys.argv[1].rstrip("/")
    screenshot = sys.argv[2] if len(sys.argv) > 2 else None
    ours = urlsplit(base).netloc
    driver = browser()
    try:
        # 1. A protected page without a session: the login page, with the way back.
        driver.get(base + "/app/inbox?page=2")
        wait_path(driver, "/auth/login", "redirect to the login page")
        check("return_to=%2Fapp%2Finbox%3Fpage%3D2" in driver.current_url,
              "return URL kept", driver)
        if screenshot:
            driver.save_screenshot(screenshot)

        # 2. A wrong password: the form again, with a message that names nobody.
        sign_in(driver, "user1", "wrong password")
        WebDriverWait(driver, 10).until(
            ec.presence_of_element_located((By.CSS_SELECTOR, "[role=alert]")))
        check("Invalid username or password." in driver.page_source,
              "error message", driver)

        # 3. The right one: back where the user was going, as user 1.
        sign_in(driver, "user1", "abcxyz")
        wait_path(driver, "/app/inbox", "back to the page asked for")
        check("page=2" in driver.current_url, "query kept", driver)
        check("identity=1" in driver.page_source, "the upstream saw X-Identity", driver)
        names = {c["name"]: c for c in driver.get_cookies()}
        session = names.get("gateway-session")
        check(session is not None and session["httpOnly"], "HttpOnly session cookie",
              driver)
        check(session.get("sameSite") == "Lax", "SameSite=Lax", driver)
        check(not names["gateway-csrf"]["httpOnly"], "readable CSRF cookie", driver)

        # 4. A reload: still signed in.
        driver.refresh()
        check(urlsplit(driver.current_url).path == "/app/inbox"
              and "identity=1" in driver.page_source, "still signed in after reload",
              driver)

        # 5. A script's POST on the session cookie: it echoes the readable CSRF cookie in
        # X-Gateway-CSRF and passes; the same token in X-CSRF-Token (an app framework's
        # header, not ours) proves nothing to the gateway.
        statuses = driver.execute_async_script("""
            const done = arguments[arguments.length - 1];
            const token = document.cookie.split('; ')
                .find(c => c.startsWith('gateway-csrf=')).slice('gateway-csrf='.length);
            const post = h => fetch('/app/items', {method: 'POST', headers: h})
                .then(r => r.status);
            Promise.all([post({'X-Gateway-CSRF': token}), post({'X-CSRF-Token': token})])
                .then(done, e => done(String(e)));
        """)
        check(statuses == [200, 403], f"script POSTs answered {statuses}", driver)

        # 6. Sign out with the page's button: the next navigation needs a sign-in.
        driver.get(base + "/auth/login")
        check("Signed in" in driver.page_source, "signed-in page", driver)
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait_path(driver, "/auth/login", "after sign-out")
        WebDriverWait(driver, 10).until(ec.presence_of_element_located((By.ID, "username")))
        driver.get(base + "/app/inbox")
        wait_path(driver, "/auth/login", "signed out: the login page again")

        # 7. A return URL off the site is refused: the login lands on our own root.
        for evil in ("//evil.example/", "/%5Cevil.example", "https://evil.example/"):
            driver.delete_all_cookies()
            driver.get(base + "/auth/login?return_to=" + evil.replace("/", "%2F"))
            sign_in(driver, "user1", "abcxyz")
            wait_path(driver, "/", "refused return URL " + evil)
            check(urlsplit(driver.current_url).netloc == ours, "stayed on our site " + evil,
                  driver)
        print("ok")
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
